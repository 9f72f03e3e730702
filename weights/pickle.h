#pragma once
// A restricted unpickler for PyTorch checkpoints (.pth): it understands what torch.save writes for a state_dict
// and executes nothing, which makes it safer than torch.load (whose pickle can run any Python callable).
//
// Accepted: the opcodes of pickle protocols 0..5 that such data can contain (PROTO, FRAME, MARK, the stack and
// memo opcodes, None/bool/int/float/str/bytes, tuples, lists, dicts, persistent ids, GLOBAL/STACK_GLOBAL, REDUCE,
// NEWOBJ, BUILD). GLOBAL/STACK_GLOBAL accept only collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_tensor, torch._utils._rebuild_parameter, the torch.<X>Storage classes and (for the tar
// layout's tensor records) the torch.<X>Tensor classes, X in Float, Double, Half, BFloat16, Long, Int, Short, Char,
// Byte, Bool; and torch.nn.parameter.Parameter, see below. Any other global is rejected with
// "<context>: pickle global 'os.system' is not allowed in a checkpoint" before anything refers to it. Classes are
// only values: nothing is ever called. REDUCE means:
//   collections.OrderedDict()                          -> an empty Dict
//   _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) -> Kind::Tensor
//   _rebuild_tensor(storage, offset, size, stride)     -> Kind::Tensor (storage must be a Persistent value)
//   _rebuild_parameter(tensor, requires_grad, hooks)   -> that tensor
// NEWOBJ accepts collections.OrderedDict with no arguments (-> an empty Dict), and torch.nn.parameter.Parameter
// with no arguments, as the 2017 tar layout (torchvision's resnet18-5c106cde.pth) writes a Parameter: the BUILD
// that follows must give it the state (data, grad, hooks, requires_grad, volatile), and the Parameter becomes its
// data (a Persistent tensor key, or a Tensor). The Parameter class and a Parameter before its BUILD can never be
// nested or returned. Otherwise BUILD is accepted only on a Dict (an OrderedDict's state such as `_metadata`), and
// the state is ignored. Sets, extension codes, out-of-band buffers, INST/OBJ are rejected.
// Integers must fit in int64; text must be valid UTF-8 (Python 2 STRING opcodes are decoded as UTF-8, as
// torch.load does); dict keys must be str, bytes, int, bool or None (a repeated key replaces the value in place,
// as in Python).
//
// Hostile input: every length is checked against the bytes that remain before anything is read or allocated,
// nothing recurses on input-controlled depth, every opcode costs time proportional to the bytes or stack items it
// consumes (strings are interned, so repeated dict keys compare in O(1)), no cycle can form (a container cannot
// change once it is nested in another), and memory is bounded by the limits below: at most kMaxValues values of
// about 300 bytes each plus the input's own text, under 1 GB whatever the input. A malformed pickle is a
// tl::Error "<context>: pickle: <what> (opcode <NAME> at byte <N>)".
#include <cstddef>
#include <cstdint>
#include <string>

#include "weights/pickle_value.h"

namespace tl::pickle {

constexpr int kMaxDepth = 64;              // nesting of containers (a state_dict needs about 6)
constexpr size_t kMaxMarks = 64;           // MARKs open at once
constexpr size_t kMaxStack = 1 << 20;      // values on the stack at once
constexpr size_t kMaxValues = 1 << 21;     // values created by one pickle (a state_dict needs about 20 per tensor)
constexpr size_t kMaxMemo = kMaxValues;    // memo entries (Python memoizes each value at most once)
constexpr size_t kMaxRank = 16;            // dimensions of a tensor's size and stride

// Parses one pickle starting at data[0]; stops at STOP and reports how many bytes it consumed (legacy files hold
// several pickles back to back). `context` prefixes every error ("model.pth: archive/data.pkl: ...").
// The STOP must leave exactly one value on the stack and no MARK open.
ValuePtr unpickle(const uint8_t* data, size_t size, const std::string& context, size_t* consumed = nullptr);

}  // namespace tl::pickle
