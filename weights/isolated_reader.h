#pragma once
// Runs a reader that goes through a library we cannot fix (libhdf5) in a forked child process, so that a corrupt
// or hostile file which crashes or hangs that library costs one tl::Error naming the file, never the process.
//
// The child runs the work and streams its result to the parent through a pipe (the parent reads it straight into
// place: no copy of the whole result on either side), or sends its tl::Error message through a second one, and
// leaves with _exit: no atexit handler runs there (libhdf5's own, which can print "infinite loop closing library"
// after a bad file, included) and stdio buffers copied from the parent are never flushed twice. Its stdout and
// stderr go to /dev/null, so the library's noise never reaches the user. The parent waits at most `limit`.
//
// fork() in a multithreaded process: only the forking thread exists in the child, and a lock another thread held
// at the fork stays locked there forever. That is acceptable for this work because the child runs only the
// library, our reader and malloc (glibc makes malloc fork-safe); it starts no thread and no OpenMP region (libgomp's
// pool does not survive a fork), and the library's own locks are taken in the child only (the parent never calls
// the library, see weights/hdf5_file.h). Were a lock inherited locked anyway, the child would hang and the time
// limit turns that into an error too. The child dies with the parent (PR_SET_PDEATHSIG), so an interrupted tl
// leaves no reader behind; it inherits the parent's signal handlers (tl transfer's Ctrl-C handler only sets a flag).
// Cost: one fork and exit, growing with the parent's resident memory (13 ms per read of a small file in our VM,
// where a bare fork costs 0.2 ms: the CUDA and BLAS libraries tl links dominate), plus one more pass over the result.
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "weights/imported.h"

namespace tl {

struct IsolatedRun {
  std::string path;        // the file being read: every message starts with "<path>: "
  std::string library;     // what may crash or hang, for messages: "libhdf5"
  std::string crash_hint;  // said after a crash: "the file is corrupt or not a Keras weights file"
  std::chrono::seconds limit{120};
};

// The child's end of the result pipe. A failed write means the parent stopped listening: the child just exits.
class IsolatedOutput {
 public:
  explicit IsolatedOutput(int fd) : fd_(fd) {}
  void write(const void* data, size_t size);

 private:
  int fd_;
};

// The parent's end: read() fills exactly `size` bytes or throws (an internal exception that run_isolated turns
// into the right tl::Error: the child's message, its crash, or the time limit). Bytes come in the order written.
class IsolatedInput {
 public:
  IsolatedInput(int fd, std::chrono::steady_clock::time_point deadline) : fd_(fd), deadline_(deadline) {}
  void read(void* data, size_t size);

 private:
  int fd_;
  std::chrono::steady_clock::time_point deadline_;
};

// Runs work(output) in a child process while receive(input) reads what it writes (bytes left unread are dropped
// once `receive` returns, so the child never blocks on them). A tl::Error thrown by the work
// is rethrown here with its message unchanged. Otherwise throws tl::Error "<path>: ..." when the child is killed
// by a signal ("<library> crashed while reading this file (signal 11, Segmentation fault): <crash_hint>"), runs
// past the limit ("<library> did not finish reading this file in 120 s") or cannot be started; an exception from
// `receive` (a malformed result) kills the child and propagates.
void run_isolated(const IsolatedRun& run, const std::function<void(IsolatedOutput&)>& work,
                  const std::function<void(IsolatedInput&)>& receive);

// run_isolated for a checkpoint reader: the child reads; the format, metadata strings (any bytes) and tensors
// (F32/F64/I64, any shape) come back bit for bit, in order.
ImportedCheckpoint read_checkpoint_isolated(const IsolatedRun& run, const std::function<ImportedCheckpoint()>& read);

}  // namespace tl
