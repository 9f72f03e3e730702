#!/usr/bin/python3
"""Writes the hand-made seed inputs of the fuzz targets into fuzz/corpus/<target>/seed-*.

Deterministic: running it again rewrites the same bytes. Needs Debian's /usr/bin/python3 with
python3-torch (for the pickle and pth seeds). Inputs that libFuzzer found and `scripts/fuzz.sh` merged in
(hash-named files next to these) are not touched.

    /usr/bin/python3 fuzz/make_seeds.py
"""
import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = "/work/shared/data/weights"


def write(target, name, data):
    folder = os.path.join(ROOT, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---------------------------------------------------------------- safetensors and its JSON headers
def safetensors(header, data=b"", pad=True):
    h = header.encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    f32 = struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    # The reference implementation's own test file: unpadded 64-byte header.
    ref = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
    files = {
        "reference": safetensors(ref, f32, pad=False),
        "f64-i64-scalar-empty-metadata": safetensors(
            '{"__metadata__":{"architecture":"resnet18","preprocessing.mean":"0.485,0.456,0.406"},'
            '"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},'
            '"n":{"dtype":"I64","shape":[],"data_offsets":[16,24]},'
            '"e":{"dtype":"F32","shape":[0,3],"data_offsets":[24,24]}}',
            struct.pack("<2dq", 1.5, -2.25, 7)),
        "order-differs-from-data": safetensors(
            '{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},'
            '"e":{"dtype":"F64","shape":[0],"data_offsets":[4,4]},'
            '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', struct.pack("<2f", 1, 2)),
        "unicode-names": safetensors(
            '{"caf\\u00e9.\\ud83d\\ude00":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},'
            '"t\\"ab\\\\":{"dtype":"I64","shape":[1],"data_offsets":[4,12]}}', b"\0" * 12),
        "empty-header": safetensors("{}"),
        "metadata-only": safetensors('{"__metadata__":{"format":"pt"}}'),
        "unsupported-f16": safetensors('{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4),
        "unknown-dtype": safetensors('{"h":{"dtype":"Q7","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4),
        "overlap": safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                               '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
        "hole": safetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                            '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', b"\0" * 12),
        "shape-overflow": safetensors(
            '{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', b"\0" * 8),
        "huge-header-length": struct.pack("<Q", 2**63 + 5) + b"{}",
        "short": b"\x02\0\0\0\0",
        "duplicate-key": safetensors('{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
                                     '"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}', b"\0" * 8),
    }
    for name, data in files.items():
        write("safetensors", name, data)
    # The same headers, bare, seed the JSON parser.
    for name, data in files.items():
        if len(data) >= 8:
            n = struct.unpack("<Q", data[:8])[0]
            if n <= len(data) - 8:
                write("json", "header-" + name, data[8:8 + n])


def json_seeds():
    cases = {
        "numbers": '[0,-0,1,-1,9223372036854775807,-9223372036854775808,9223372036854775808,'
                   '1.5,-0.0,1e308,2.5E-7,1e-320,0.1e+2]',
        "literals": ' \t\r\n{"t":true,"f":false,"n":null} ',
        "escapes": '["\\"\\\\\\/\\b\\f\\n\\r\\t","\\u0000\\u001f\\u00e9\\u20ac","\\ud83d\\ude00","\u00e9\u20ac"]',
        "nested": "[" * 63 + "{}" + "]" * 63,
        "too-deep": "[" * 70 + "]" * 70,
        "objects": '{"a":{"b":{"c":[1,{"d":"e"}]}},"":[],"x":{}}',
        "bad-surrogate": '["\\ud800"]',
        "trailing-comma": '[1,2,]',
        "nan": '[NaN]',
        "leading-zero": '[01]',
    }
    for name, text in cases.items():
        write("json", name, text)


# ---------------------------------------------------------------- pickles, as .pth files hold them
def pickle_seeds():
    import torch

    torch.manual_seed(0)
    state = collections.OrderedDict([
        ("conv.weight", torch.randn(2, 1, 3, 3)),
        ("bn.running_mean", torch.zeros(2, dtype=torch.float64)),
        ("bn.num_batches_tracked", torch.tensor(3)),
        ("fc.weight", torch.randn(4, 3).t()),           # non-contiguous: stride (1, 3)
        ("fc.bias", torch.randn(8)[2:6]),              # storage offset 2, shared storage
        ("half", torch.ones(2, dtype=torch.float16)),
    ])
    state["fc.weight_again"] = state["fc.weight"]      # memo reference to the same tensor

    buffer = io.BytesIO()
    torch.save(state, buffer)                          # zip layout: data.pkl inside
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as z:
        write("pickle", "zip-data-pkl", z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]))

    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    legacy = buffer.getvalue()
    # Legacy layout: magic, protocol, sys_info and the state_dict pickles back to back, then the
    # storage-key list pickle and raw storage bytes. Keep everything before the raw bytes.
    stream = io.BytesIO(legacy)
    for _ in range(4):
        _load_state_dict_pickle(stream)
    keys_start = stream.tell()
    keys = pickle.load(stream)
    # The magic number pickle (LONG1 of 10 bytes) is beyond int64: the .pth reader skips it by hand.
    magic_end = _end_of_first_pickle(legacy)
    legacy = legacy[magic_end:stream.tell()]
    keys_start -= magic_end
    # Legacy storage keys are str(id(storage)), memory addresses: rename them 0, 1, ... so the seed
    # is the same on every run (protocol 2 writes each as BINUNICODE: 'X', 4-byte length, UTF-8).
    assert legacy[keys_start:keys_start + 2] == b"\x80\x02"
    for i, key in enumerate(keys):
        def binunicode(text):
            return b"X" + struct.pack("<I", len(text)) + text.encode()
        assert legacy.count(binunicode(key)) >= 2
        legacy = legacy.replace(binunicode(key), binunicode(str(i)))
    write("pickle", "legacy-pickles", legacy)

    # Real files: the zip-layout ResNet18's data.pkl and the 2017 tar layout's 'pickle' member.
    with zipfile.ZipFile(os.path.join(WEIGHTS, "resnet18-miniimagenet.pth")) as z:
        write("pickle", "resnet18-miniimagenet-data-pkl",
              z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]))
    with tarfile.open(os.path.join(WEIGHTS, "resnet18-5c106cde.head1MiB.pth")) as t:
        for member in t:
            if member.name in ("pickle", "tensors"):
                write("pickle", "resnet18-tar-" + member.name, t.extractfile(member).read()[:16384])
            if member.name == "storages":
                break

    # Plain data in every protocol: the opcodes a state_dict's metadata can use.
    plain = {"version": 1, "big": 2**62, "neg": -129, "f": 0.5, "s": "caf\u00e9",
             "t": (1, (2, 3), ()), "l": [None, True, False, [], {}], "long": "x" * 300}
    for protocol in range(0, 6):
        write("pickle", "plain-protocol-%d" % protocol, pickle.dumps(plain, protocol=protocol))
    # Protocols 0-2 write bytes through the global _codecs.encode, which is refused; 3+ have opcodes.
    for protocol in (3, 5):
        write("pickle", "bytes-protocol-%d" % protocol, pickle.dumps([b"", b"\x00\xff", b"x" * 300], protocol=protocol))
    write("pickle", "int-beyond-64-bits", pickle.dumps(2**70, protocol=2))
    shared = [1, 2]
    write("pickle", "memo-shared", pickle.dumps([shared, shared, shared], protocol=2))

    # What the unpickler must refuse: a global outside the allow-list, and a self-referencing list.
    write("pickle", "evil-os-system", b"cos\nsystem\n(S'echo pwned'\ntR.")
    write("pickle", "evil-stack-global", pickle.dumps(_Evil(), protocol=4))
    cyclic = []
    cyclic.append(cyclic)
    write("pickle", "self-referencing-list", pickle.dumps(cyclic, protocol=2))


# ---------------------------------------------------------------- whole .pth checkpoints
FIXTURES = os.path.join(ROOT, "..", "tests", "fixtures")
REAL_HEAD_BYTES = 65536  # the pth target's -max_len: the real files' pickles lie in their first 64 KiB


def pth_seeds():
    import shutil
    import sys
    import torch

    # The test fixtures (every layout, views, float16/bfloat16/integer storages, zip64, a bomb, os.system).
    for name in sorted(os.listdir(os.path.join(FIXTURES, "pth"))):
        if name.endswith(".pth"):
            shutil.copyfile(os.path.join(FIXTURES, "pth", name), _seed_path("pth", "fixture-" + name))
    shutil.copyfile(os.path.join(FIXTURES, "pickle", "state_dict_legacy.pth"),
                    _seed_path("pth", "fixture-state_dict_legacy.pth"))
    # The head of each real checkpoint: the zip without its central directory, the 2017 tar cut in 'storages'.
    for name in sorted(os.listdir(WEIGHTS)):
        if name.endswith(".pth"):
            with open(os.path.join(WEIGHTS, name), "rb") as f:
                write("pth", "real-head64k-" + name, f.read(REAL_HEAD_BYTES))

    sys.path.insert(0, FIXTURES)
    import make_pth_fixtures as fixtures  # its torch-exact legacy and tar writers

    torch.manual_seed(0)
    w = torch.randn(2, 3)
    state = collections.OrderedDict([
        ("w", w), ("w.t", w.t()), ("n", torch.tensor(3)), ("h", torch.tensor([1.5, -2.0, 65504.0], dtype=torch.float16)),
        ("d", torch.tensor([0.25, -1.0], dtype=torch.float64)), ("u", torch.tensor([0, 255], dtype=torch.uint8)),
    ])

    buffer = io.BytesIO()
    torch.save(state, buffer)  # miniz: data descriptors, a ZIP64 end record
    small_zip = buffer.getvalue()
    write("pth", "small-zip", small_zip)
    with zipfile.ZipFile(io.BytesIO(small_zip)) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
        central, last_entry = z.start_dir, z.infolist()[-1].header_offset
    write("pth", "small-zip-no-central-directory", small_zip[:central])  # found by scanning for descriptors
    write("pth", "small-zip-cut-in-last-entry", small_zip[:last_entry + 70])
    # The same entries with their sizes in the local headers (Python's zipfile, no data descriptors), whole and cut.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    sized_zip = buffer.getvalue()
    write("pth", "small-zip-local-sizes", sized_zip)
    with zipfile.ZipFile(io.BytesIO(sized_zip)) as z:
        write("pth", "small-zip-local-sizes-no-central-directory", sized_zip[:z.start_dir])

    ids = {}
    legacy = fixtures.legacy_stream(state, lambda s: ids.setdefault(s._cdata, str(len(ids))))
    write("pth", "small-legacy", legacy)
    write("pth", "small-legacy-cut-in-storages", legacy[:len(legacy) - 20])
    write("pth", "legacy-storage-view", _legacy_with_storage_view())

    tar = fixtures.tar_bytes(state)
    write("pth", "small-tar", tar)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        storages = t.getmember("storages")
    # Cut after the storage count and the first storages, inside a later one's bytes.
    write("pth", "small-tar-cut-in-storages", tar[:storages.offset_data + storages.size // 2])
    write("pth", "tar-gnu-storage-view", _tar_with_storage_view())


class _StorageRef:
    """Pickled as the persistent id it carries."""

    def __init__(self, pid):
        self.pid = pid


class _Rebuilt:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, pid, offset, size, stride):
        self.args = (_StorageRef(pid), offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        import torch
        return (torch._utils._rebuild_tensor_v2, self.args)


def _pickle_with_pids(obj):
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda o: o.pid if isinstance(o, _StorageRef) else None
    pickler.dump(obj)
    return buffer.getvalue()


def _legacy_with_storage_view():
    """A legacy stream whose persistent ids carry view metadata (key, offset, numel), as torch < 1.0 wrote."""
    import torch
    whole = ("storage", torch.FloatStorage, "0", "cpu", 6, None)
    view = ("storage", torch.FloatStorage, "0", "cpu", 6, ("1", 2, 3))
    state = collections.OrderedDict([("whole", _Rebuilt(whole, 0, (2, 3), (3, 1))),
                                     ("view", _Rebuilt(view, 1, (2,), (1,)))])
    out = b"".join(pickle.dumps(x, protocol=2) for x in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    out += _pickle_with_pids(state) + pickle.dumps(["0"], protocol=2)
    return out + struct.pack("<q6f", 6, 0, 1, 2, 3, 4, 5)


def _tar_with_storage_view():
    """The tar layout in GNU format (no pax headers) with a storage view in 'storages'."""
    import torch
    sys_info = pickle.dumps({"protocol_version": 1000, "little_endian": True,
                             "type_sizes": {"int": 4, "short": 2, "long": 4}}, protocol=2)
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda o: str(o) if isinstance(o, int) and o >= 5000 else None
    pickler.dump(collections.OrderedDict([("whole", 5000), ("view", 5001)]))
    state = buffer.getvalue()
    tensors = pickle.dumps(2, protocol=2)
    for key, storage, size, stride, offset in ((5000, 1000, (2, 3), (3, 1), 0), (5001, 1001, (3,), (1,), 0)):
        tensors += pickle.dumps((key, storage, torch.FloatTensor), protocol=2)
        tensors += struct.pack("<i4x", len(size)) + struct.pack("<%dq" % len(size), *size)
        tensors += struct.pack("<%dq" % len(stride), *stride) + struct.pack("<q", offset)
    storages = pickle.dumps(1, protocol=2) + pickle.dumps((1000, "cpu", torch.FloatStorage), protocol=2)
    storages += struct.pack("<q6f", 6, 0, 1, 2, 3, 4, 5) + pickle.dumps([(1001, 1000, 2, 3)], protocol=2)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("sys_info", sys_info), ("pickle", state), ("tensors", tensors), ("storages", storages)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1483719550, 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _seed_path(target, name):
    folder = os.path.join(ROOT, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, "seed-" + name)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _end_of_first_pickle(data):
    stream = io.BytesIO(data)
    pickle.load(stream)
    return stream.tell()


def _load_state_dict_pickle(stream):
    """Reads past one pickle that may hold torch's persistent ids and globals, building nothing real."""
    class Loader(pickle.Unpickler):
        def persistent_load(self, pid):
            return pid

        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            return lambda *args: None
    Loader(stream).load()


if __name__ == "__main__":
    safetensors_seeds()
    json_seeds()
    pickle_seeds()
    pth_seeds()
