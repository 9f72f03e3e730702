#include "weights/isolated_reader.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>

#include "engine/error.h"

namespace tl {

namespace {

// Exit statuses of the child.
constexpr int kChildDone = 0;
constexpr int kChildError = 1;     // its message is in the message pipe
constexpr int kChildLostPipe = 2;  // the parent stopped listening; it has already said why
// A message longer than this is cut, so that it always fits the pipe's buffer and the child never blocks on it.
constexpr size_t kMaxMessage = 32 << 10;

// Thrown by IsolatedInput::read through `receive`; not std::exceptions, so no handler there takes them for its own.
struct ChildStopped {};
struct TimedOut {};

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Writes everything or gives up (the parent is gone or has killed us).
bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Waits until `fd` is readable: false when the deadline passes first.
bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (ready > 0 || (ready < 0 && errno != EINTR)) return true;  // a poll error: the read reports it
    if (ready == 0) return false;
  }
}

// Reads both pipes to their ends (the child's exit): the message is kept, result bytes that `receive` left are
// dropped, so that a child with more to send never blocks. False when the deadline passes first.
bool read_to_end(int data, int messages, std::string& message, std::chrono::steady_clock::time_point deadline) {
  pollfd fds[2] = {{data, POLLIN, 0}, {messages, POLLIN, 0}};
  char buffer[1 << 16];
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return false;
    for (pollfd& p : fds) {
      if (p.fd < 0 || (ready > 0 && p.revents == 0)) continue;
      const ssize_t n = ::read(p.fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) p.fd = -1;  // poll skips negative descriptors
      else if (p.fd == messages && message.size() < kMaxMessage) message.append(buffer, static_cast<size_t>(n));
    }
  }
  return true;
}

// The child's whole life: it never returns into the caller's stack.
[[noreturn]] void child_main(const IsolatedRun& run, const std::function<void(IsolatedOutput&)>& work, pid_t parent,
                             int data, int messages) {
#ifdef __linux__
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(kChildLostPipe);  // the parent died before the line above
#else
  (void)parent;
#endif
  ::signal(SIGPIPE, SIG_IGN);  // a parent gone makes write fail (kChildLostPipe), not a "crash"
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) {
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) ::close(null);
  }
  std::string message;
  try {
    IsolatedOutput output(data);
    work(output);
    ::_exit(kChildDone);
  } catch (const Error& e) {
    message = e.what();
  } catch (const std::bad_alloc&) {
    message = str(run.path, ": ran out of memory while reading this file");
  } catch (const std::exception& e) {
    message = str(run.path, ": ", e.what());
  } catch (...) {
    message = str(run.path, ": the reader failed with an unknown exception");
  }
  if (message.size() > kMaxMessage) message.resize(kMaxMessage);
  ::_exit(write_all(messages, message.data(), message.size()) ? kChildError : kChildLostPipe);
}

// Reaps the child, retrying when a signal interrupts the wait.
int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return status;
}

}  // namespace

void IsolatedOutput::write(const void* data, size_t size) {
  if (!write_all(fd_, static_cast<const char*>(data), size)) ::_exit(kChildLostPipe);
}

void IsolatedInput::read(void* data, size_t size) {
  char* to = static_cast<char*>(data);
  while (size > 0) {
    if (!wait_readable(fd_, deadline_)) throw TimedOut{};
    const ssize_t n = ::read(fd_, to, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw ChildStopped{};  // end of file (or a read error): the child's status says what happened
    to += n;
    size -= static_cast<size_t>(n);
  }
}

void run_isolated(const IsolatedRun& run, const std::function<void(IsolatedOutput&)>& work,
                  const std::function<void(IsolatedInput&)>& receive) {
  const auto cannot_start = [&](const char* call) {
    return Error(str(run.path, ": cannot start a process to read this file with ", run.library, ": ", call, ": ",
                     std::strerror(errno)));
  };
  Fd data_in, data_out, messages_in, messages_out;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw cannot_start("pipe");
  data_in.fd = fds[0];
  data_out.fd = fds[1];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw cannot_start("pipe");
  messages_in.fd = fds[0];
  messages_out.fd = fds[1];
#ifdef F_SETPIPE_SZ
  ::fcntl(data_out.fd, F_SETPIPE_SZ, 1 << 20);  // fewer round trips for a large result; best effort
#endif
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw cannot_start("fork");
  if (pid == 0) {
    ::close(data_in.fd);
    ::close(messages_in.fd);
    child_main(run, work, parent, data_out.fd, messages_out.fd);
  }
  data_out.reset();
  messages_out.reset();

  // Another thread's child, forked meanwhile, may hold copies of the write ends until it exits or execs: that
  // only delays seeing our child's end, bounded by that one's own limit.
  const auto deadline = std::chrono::steady_clock::now() + run.limit;
  const auto stop_child = [&] {
    ::kill(pid, SIGKILL);
    wait_for(pid);
  };
  const auto timed_out = [&] {
    stop_child();
    return Error(str(run.path, ": ", run.library, " did not finish reading this file in ", run.limit.count(), " s"));
  };
  bool complete = true;
  try {
    IsolatedInput input(data_in.fd, deadline);
    receive(input);
  } catch (const ChildStopped&) {
    complete = false;
  } catch (const TimedOut&) {
    throw timed_out();
  } catch (...) {
    stop_child();
    throw;
  }
  // The pipes end when the child exits: its message, if any, is whole then.
  std::string message;
  if (!read_to_end(data_in.fd, messages_in.fd, message, deadline)) throw timed_out();

  const int status = wait_for(pid);
  if (status < 0)
    throw Error(str(run.path, ": lost the process reading this file with ", run.library, ": waitpid: ",
                    std::strerror(errno)));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    throw Error(str(run.path, ": ", run.library, " crashed while reading this file (signal ", sig, ", ",
                    name != nullptr ? name : "unknown", "): ", run.crash_hint));
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == kChildDone && complete) return;
  if (code == kChildError && !message.empty()) throw Error(message);
  if (code == kChildDone)
    throw Error(str(run.path, ": internal error: the process reading this file with ", run.library,
                    " ended before sending its whole result"));
  throw Error(str(run.path, ": the process reading this file with ", run.library, " exited with status ", code,
                  " and no message: ", run.crash_hint));
}

// ---------------------------------------------------------------------------------------------------------------
// ImportedCheckpoint through the pipe: length-prefixed strings, then each tensor as name, dtype, rank, dims and its
// raw bytes, read straight into the new tensor. Both ends are this code; the reader still bounds every length.

namespace {

// Far above anything real (names, metadata values; VGG16's largest tensor is 411 MB), far below a wild length.
constexpr uint64_t kMaxString = 16 << 20;
constexpr uint64_t kMaxCount = 1 << 20;
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 40;

void put_u64(IsolatedOutput& out, uint64_t v) { out.write(&v, sizeof v); }

void put_string(IsolatedOutput& out, const std::string& s) {
  put_u64(out, s.size());
  out.write(s.data(), s.size());
}

struct Decoder {
  IsolatedInput& in;
  const std::string& path;

  [[noreturn]] void malformed() const {
    throw Error(str(path, ": internal error: the process reading this file sent a malformed result"));
  }
  uint64_t u64(uint64_t max = UINT64_MAX) {
    uint64_t v;
    in.read(&v, sizeof v);
    if (v > max) malformed();
    return v;
  }
  std::string string() {
    std::string s(static_cast<size_t>(u64(kMaxString)), '\0');
    in.read(s.data(), s.size());
    return s;
  }
};

}  // namespace

ImportedCheckpoint read_checkpoint_isolated(const IsolatedRun& run, const std::function<ImportedCheckpoint()>& read) {
  const auto send = [&](IsolatedOutput& out) {
    ImportedCheckpoint c = read();
    put_string(out, c.format);
    put_u64(out, c.metadata.size());
    for (const auto& [key, value] : c.metadata) {
      put_string(out, key);
      put_string(out, value);
    }
    put_u64(out, c.tensors.size());
    for (const ImportedTensor& t : c.tensors)
      if (t.value.device() != Device::CPU) throw Error(str(run.path, ": tensor '", t.name, "' is not on the CPU"));
    for (ImportedTensor& t : c.tensors) {
      put_string(out, t.name);
      put_u64(out, static_cast<uint64_t>(t.value.dtype()));
      put_u64(out, t.value.shape().size());
      for (int64_t d : t.value.shape()) put_u64(out, static_cast<uint64_t>(d));
      out.write(t.value.raw(), t.value.nbytes());
      t.value = Tensor();
    }
  };

  ImportedCheckpoint c;
  const auto receive = [&](IsolatedInput& in) {
    Decoder d{in, run.path};
    c.format = d.string();
    for (uint64_t i = 0, n = d.u64(kMaxCount); i < n; ++i) {
      std::string key = d.string();
      c.metadata[key] = d.string();
    }
    const uint64_t count = d.u64(kMaxCount);
    c.tensors.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      ImportedTensor t;
      t.name = d.string();
      const auto dtype = static_cast<DType>(d.u64(static_cast<uint64_t>(DType::I64)));
      const uint64_t rank = d.u64(64);
      Shape shape;
      uint64_t nbytes = dtype_size(dtype);
      for (uint64_t r = 0; r < rank; ++r) {
        const uint64_t dim = d.u64(kMaxTensorBytes);
        if (dim != 0 && nbytes > kMaxTensorBytes / dim) d.malformed();
        nbytes *= dim;
        shape.push_back(static_cast<int64_t>(dim));
      }
      t.value = Tensor::empty(shape, dtype);
      if (t.value.nbytes() != nbytes) d.malformed();
      in.read(t.value.raw(), nbytes);
      c.tensors.push_back(std::move(t));
    }
  };

  run_isolated(run, send, receive);
  return c;
}

}  // namespace tl
