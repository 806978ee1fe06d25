// wsgate's tunnel in native code, for the issue-20 experiment (bench only, never loaded by src/): takes the two
// descriptors of a tunnel after the verified 101 and pumps them on its own epoll thread(s), with the same frame
// scan as src/tunnel/frame-scanner.ts (strict mode), the same per-connection limits (close on exceed, no
// throttle), the same close codes as src/tunnel/tunnel.ts, counters JS reads, and one "ended" callback per tunnel.
//
// Data path: each thread reads into one 64 KiB buffer, scans the frame headers in place, and writes the same
// bytes to the other socket with one send(2). Only bytes the kernel refuses are copied (into the destination's
// queue), and the source then stops being read until the queue is flushed: the JS tunnel's backpressure rule.
//
// Not here (the JS tunnel has them): lenient mode, throttling, keepalive pings and pong absorption, idle
// timeouts, TLS sockets. See bench/native/README.md for what an integration would add.
//
// Threading: JS calls add() on its thread; the tunnel goes to a thread's inbox (mutex + eventfd) and from then
// on only that thread touches it. Counters are single-writer relaxed atomics, read by JS at any time. Ended
// tunnels are reported in batches through a thread-safe function.

#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// ---- constants shared with the JS tunnel ------------------------------------------------------------------------

constexpr size_t READ_BUFFER_BYTES = 64 * 1024;
constexpr int MAX_READS_PER_EVENT = 16;
constexpr int MAX_HEADER_BYTES = 14;
constexpr int MAX_CONTROL_PAYLOAD_BYTES = 125;
constexpr double CLOSE_FRAME_DEADLINE_MS = 2000;
constexpr double CLOSE_REPLY_TIMEOUT_MS = 5000;
constexpr double TEARDOWN_LINGER_MS = 5000;
constexpr int DEADLINE_CHECK_MS = 100;

enum State { S_HEADER, S_HEADER_PARTIAL, S_PAYLOAD, S_CONTROL_PAYLOAD, S_FAILED };

// Violation codes and their labels: the same numbers as Violation in frame-scanner.ts.
enum Violation {
  V_NONE = 0,
  V_UNMASKED_CLIENT_FRAME = 1,
  V_MASKED_SERVER_FRAME = 2,
  V_RESERVED_OPCODE = 3,
  V_CONTROL_TOO_LONG = 4,
  V_CONTROL_FRAGMENTED = 5,
  V_UNEXPECTED_CONTINUATION = 6,
  V_DATA_INSIDE_MESSAGE = 7,
  V_LENGTH_TOP_BIT = 8,
  V_RSV_WITHOUT_EXTENSION = 9,
  V_NON_MINIMAL_LENGTH = 10,
  V_INVALID_CLOSE_PAYLOAD = 11,
  V_FRAME_TOO_BIG = 12,
};
const char* const VIOLATION_KIND[] = {
    "none",           "unmasked_client_frame", "masked_server_frame",   "reserved_opcode",     "control_too_long",
    "control_fragmented", "unexpected_continuation", "data_inside_message", "length_top_bit",
    "rsv_without_extension", "non_minimal_length", "invalid_close_payload", "frame_too_big",
};

// Observer stops (≥ 100, as in tunnel.ts).
constexpr int STOP_LIMIT = 100;
constexpr int STOP_TOO_BIG = 101;
constexpr int STOP_CLOSE = 105;

// Why a tunnel ended: index into REASONS (exported to JS as `reasons`).
enum Reason {
  R_CLOSED,
  R_CLIENT_CLOSE_FRAME,
  R_BACKEND_CLOSE_FRAME,
  R_CLIENT_CLOSED,
  R_BACKEND_CLOSED,
  R_CLIENT_ERROR,
  R_BACKEND_ERROR,
  R_MESSAGE_TOO_BIG,
  R_LIMIT_MESSAGES,
  R_LIMIT_BYTES,
  R_LIMIT_FRAMES,
  R_LIMIT_CONTROL,
  R_CLOSE_DEADLINE,
  R_CLOSE_REPLY_TIMEOUT,
  R_PROXY_CLOSE,
  R_HANDSHAKE_TIMEOUT,
  R_VIOLATION_BASE,  // + violation code
};
const char* const REASONS[] = {
    "closed",        "client_close_frame", "backend_close_frame", "client_closed", "backend_closed",
    "client_error",  "backend_error",      "message_too_big",     "limit:messages_per_second",
    "limit:bytes_per_second", "limit:max_frames_per_message", "limit:control_frames_per_second",
    "close_deadline", "close_reply_timeout", "proxy_close", "handshake_timeout",
};
constexpr int REASON_COUNT = R_VIOLATION_BASE + 13;

enum Initiator { I_CLIENT = 0, I_BACKEND = 1, I_PROXY = 2 };

constexpr int SIZE_BUCKETS = 11;  // MESSAGE_SIZE_BUCKETS in src/observe/metrics.ts
const double MESSAGE_SIZE_BUCKETS[SIZE_BUCKETS] = {16,     64,      256,       1024,      4096,    16384,
                                                   65536,  262144,  1048576,   4194304,   16777216};

// Counter slots (summed over threads by counters()).
enum Counter {
  C_ACTIVE,
  C_OPENED,
  C_ENDED,
  C_BYTES_C2B,
  C_BYTES_B2C,
  C_MESSAGES_C2B,
  C_MESSAGES_B2C,
  C_CONTROL_FRAMES,
  C_VIOLATIONS,
  C_LIMITS,
  C_QUEUED_BYTES,  // bytes the kernel refused and that were copied into a write queue
  C_ACCEPTED,      // connections accepted by the native accept path
  C_REFUSED,       // of those, answered with an HTTP error or dropped before a 101
  C_SPLICED_BYTES, // payload bytes moved socket → pipe → socket with splice(2), never in user space
  C_SIZE_BUCKETS,  // 2 × (SIZE_BUCKETS + 1)
  C_SIZE_SUM = C_SIZE_BUCKETS + 2 * (SIZE_BUCKETS + 1),
  C_COUNT = C_SIZE_SUM + 2,
};

double nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// ---- limits and token buckets (token-bucket.ts, lazily refilled, no timers) ---------------------------------------

struct DirectionLimits {
  // 0 = unlimited (the config's Infinity).
  double messagesPerSecond, burstMessages, bytesPerSecond, maxMessageBytes, maxFramesPerMessage,
      controlFramesPerSecond;
};

struct Bucket {
  double tokens = 0, lastMs = -1, perMs = 0, burst = 0;
  bool made = false;
  void make(double rate, double b) {
    made = true;
    perMs = rate / 1000;
    burst = b;
    tokens = b;
    lastMs = -1;
  }
  bool take(double n, double now) {
    if (lastMs >= 0 && now > lastMs) tokens = std::min(burst, tokens + (now - lastMs) * perMs);
    if (now > lastMs) lastMs = now;
    double need = std::min(n, burst);
    if (tokens + perMs * 1e-3 + 1e-9 < need) return false;
    tokens -= n;
    return true;
  }
};

// ---- close frames (close-frame.ts) ------------------------------------------------------------------------------

bool validCloseCode(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

bool validUtf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

bool validClosePayload(const uint8_t* p, size_t n) {
  if (n == 0) return true;
  if (n == 1) return false;
  return validCloseCode((p[0] << 8) | p[1]) && validUtf8(p + 2, n - 2);
}

// A close frame with `reason` (ASCII here: every reason the pump sends is), masked toward backends (§5.3).
std::string closeFrame(int code, const char* reason, bool mask) {
  size_t rlen = std::min(strlen(reason), size_t(123));
  size_t plen = 2 + rlen;
  std::string f;
  f.push_back(char(0x88));
  f.push_back(char((mask ? 0x80 : 0) | plen));
  uint8_t payload[125];
  payload[0] = uint8_t(code >> 8);
  payload[1] = uint8_t(code & 0xff);
  memcpy(payload + 2, reason, rlen);
  if (mask) {
    uint8_t key[4];
    if (getrandom(key, 4, 0) != 4) memset(key, 0x5a, 4);
    f.append(reinterpret_cast<char*>(key), 4);
    for (size_t i = 0; i < plen; i++) payload[i] ^= key[i & 3];
  }
  f.append(reinterpret_cast<char*>(payload), plen);
  return f;
}

// ---- tunnel state -----------------------------------------------------------------------------------------------

struct Tunnel;
struct Thread;

// One socket of a tunnel: 0 = client, 1 = backend. Its address is the epoll cookie.
struct Side {
  Tunnel* tunnel;
  int index;
  int fd = -1;
  uint32_t interest = 0;
  bool readStopped = false;  // its reader is paused because the other socket's queue is full
  bool eof = false;          // read 0: the peer sent FIN
  bool wantShutdown = false; // shutdown(SHUT_WR) once the queue is empty
  bool shut = false;
  std::string queue;  // bytes the kernel refused (the only payload copy), written on EPOLLOUT
  size_t queueOffset = 0;
  bool queued() const { return queueOffset < queue.size(); }
};

// One direction: source side → destination side, with its scanner and limits (the Pump of tunnel.ts).
struct Direction {
  bool fromClient;
  int src, dst;  // side indexes
  DirectionLimits limits;
  Bucket messageBucket, byteBucket, controlBucket;
  // Scanner (frame-scanner.ts, strict).
  uint8_t state = S_HEADER;
  uint8_t carry[MAX_HEADER_BYTES];
  uint8_t carryLen = 0, carryNeed = 0;
  bool fin = false, masked = false, inMessage = false;
  uint8_t opcode = 0, messageOpcode = 0;
  uint8_t maskKey[4];
  uint64_t payloadLength = 0, payloadLeft = 0, messageBytes = 0, messageFrames = 0;
  int64_t frameAbs = 0, bytesAbs = 0;  // stream positions of the current frame and of the next byte
  int failCode = 0;
  uint8_t controlBuf[MAX_CONTROL_PAYLOAD_BYTES];
  uint8_t controlLen = 0;
  // Pump.
  double chunkTime = 0;
  uint64_t bytes = 0, messages = 0;
  bool closedToDest = false, halted = false, sourceGone = false;
  std::string pendingClose;  // a close frame waiting for the frame in flight to end
  int closeCodeSeen = 0;
  int limitReason = 0;
};

struct Handshake;

// Phases of a connection accepted natively; tunnels handed over by add() start in PHASE_TUNNEL.
enum Phase : uint8_t { PHASE_TUNNEL, PHASE_HEAD, PHASE_DECIDING, PHASE_CONNECTING, PHASE_RESPONSE };

// A decision of the JS side about a natively read head (listen() with a decide callback): refuse with `status`, or
// (status 0) send `request` to 127.0.0.1:`port` and expect `accept`.
struct Decision {
  uint64_t id;
  int status;
  int port;
  std::string request, accept;
};
// A head waiting for JS; JS gets [id, thread, client IPv4, offset, length] per head and one buffer of them all.
struct Ask {
  uint64_t id;
  int thread;
  uint32_t ip;
  std::string head;
};

struct Tunnel {
  Thread* thread;
  uint8_t phase = PHASE_TUNNEL;
  bool counted = true;  // counted in C_ACTIVE (a natively accepted connection is, once it switched)
  Handshake* handshake = nullptr;
  double id;
  bool rsv1Allowed;
  Side sides[2];
  Direction dirs[2];  // 0 = client → backend, 1 = backend → client
  std::string early[2];  // bytes read with the handshake, per source side
  int reason = -1;
  int initiator = I_PROXY;
  int proxyCloseCode = 0;
  bool ending = false, finished = false;
  double deadlineMs = 0;  // 0: none
  int deadlineReason = 0;
  double closingSinceMs = 0;
  Tunnel *prev = nullptr, *next = nullptr;
};

struct Ended {
  double id, closeCode, initiator, reason, bytesC2B, bytesB2C, messagesC2B, messagesB2C;
};

struct Thread {
  int epfd = -1, wakefd = -1;
  int listenFd = -1;  // the native accept path's SO_REUSEPORT socket of this thread; its cookie is &listenFd
  int index = 0;
  std::vector<Decision> decisions;                  // from JS (guarded by mutex)
  std::vector<Ask> asks;                            // to JS, after the current batch
  std::unordered_map<uint64_t, Tunnel*> deciding;   // heads JS is deciding about
  napi_threadsafe_function onHeads = nullptr;
  double nextDeadlineCheckMs = 0;
  pthread_t thread;
  std::mutex mutex;  // guards inbox, commands
  std::vector<Tunnel*> inbox;
  std::vector<int> drainCodes;
  Tunnel* head = nullptr;  // live tunnels (this thread only)
  std::vector<Tunnel*> timed;  // tunnels with a deadline (may hold finished ones until the next check)
  std::vector<Tunnel*> dead;   // finished in this epoll batch, freed after it
  std::vector<Ended> ended;    // reported after each batch
  std::atomic<double> counters[C_COUNT];
  uint8_t* readBuffer;
  int pipe[2] = {-1, -1};  // for splice(2), when on
  napi_threadsafe_function onEnded;
};

std::vector<Thread*> threads;
std::atomic<unsigned> nextThread{0};
std::atomic<uint64_t> nextId{1};

inline void count(Thread* t, int slot, double n) {
  // Single writer: a relaxed load + store is enough and needs no locked instruction.
  t->counters[slot].store(t->counters[slot].load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void finishTunnel(Tunnel* t);
void freeHandshake(Tunnel* t);
void endSockets(Tunnel* t);
void maybeEndSockets(Tunnel* t);
void sideGone(Tunnel* t, int side, int reason);

// ---- socket I/O -------------------------------------------------------------------------------------------------

void updateInterest(Side& s) {
  if (s.fd < 0) return;
  uint32_t want = (s.readStopped || s.eof ? 0u : uint32_t(EPOLLIN)) | (s.queued() ? uint32_t(EPOLLOUT) : 0u);
  if (want == s.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.ptr = &s;
  epoll_ctl(s.tunnel->thread->epfd, EPOLL_CTL_MOD, s.fd, &ev);
  s.interest = want;
}

void closeSide(Tunnel* t, int i) {
  Side& s = t->sides[i];
  if (s.fd < 0) return;
  epoll_ctl(t->thread->epfd, EPOLL_CTL_DEL, s.fd, nullptr);
  close(s.fd);
  s.fd = -1;
  s.queue.clear();
  s.queue.shrink_to_fit();
  s.queueOffset = 0;
  // The reader that was paused for this socket's queue can go on (reading and dropping).
  Side& other = t->sides[1 - i];
  if (other.readStopped) {
    other.readStopped = false;
    updateInterest(other);
  }
  if (t->sides[0].fd < 0 && t->sides[1].fd < 0) finishTunnel(t);
}

void shutdownIfDue(Tunnel* t, int i) {
  Side& s = t->sides[i];
  if (s.fd < 0 || !s.wantShutdown || s.shut || s.queued()) return;
  shutdown(s.fd, SHUT_WR);
  s.shut = true;
  if (s.eof) closeSide(t, i);
}

// Writes bytes toward side `i`: straight to the kernel when nothing is queued, the rest into the queue (copied),
// and then the reader feeding this side pauses. Returns false if the socket failed.
bool writeTo(Tunnel* t, int i, const uint8_t* p, size_t n) {
  Side& s = t->sides[i];
  if (s.fd < 0 || s.shut || n == 0) return s.fd >= 0;
  size_t done = 0;
  if (!s.queued()) {
    ssize_t w = send(s.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        sideGone(t, i, i == 0 ? R_CLIENT_ERROR : R_BACKEND_ERROR);
        return false;
      }
      w = 0;
    }
    done = size_t(w);
    if (done == n) return true;
  }
  if (s.queueOffset > 0 && s.queueOffset == s.queue.size()) {
    s.queue.clear();
    s.queueOffset = 0;
  }
  s.queue.append(reinterpret_cast<const char*>(p) + done, n - done);
  count(t->thread, C_QUEUED_BYTES, double(n - done));
  Side& reader = t->sides[1 - i];
  reader.readStopped = true;
  updateInterest(reader);
  updateInterest(s);
  return true;
}

void onWritable(Tunnel* t, int i) {
  Side& s = t->sides[i];
  while (s.queued()) {
    ssize_t w = send(s.fd, s.queue.data() + s.queueOffset, s.queue.size() - s.queueOffset, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      sideGone(t, i, i == 0 ? R_CLIENT_ERROR : R_BACKEND_ERROR);
      return;
    }
    s.queueOffset += size_t(w);
  }
  s.queue.clear();
  s.queue.shrink_to_fit();
  s.queueOffset = 0;
  Side& reader = t->sides[1 - i];
  reader.readStopped = false;
  updateInterest(reader);
  updateInterest(s);
  shutdownIfDue(t, i);
}

// ---- the scanner (frame-scanner.ts, strict mode) ------------------------------------------------------------------

inline int headerLengthOf(uint8_t b1) {
  int len7 = b1 & 0x7f;
  return (len7 < 126 ? 2 : len7 == 126 ? 4 : 10) + ((b1 & 0x80) >> 5);
}

int violate(Tunnel* t, Direction& d, int code, int64_t chunkAbs, int64_t* stop) {
  d.state = S_FAILED;
  d.failCode = code;
  count(t->thread, C_VIOLATIONS, 1);
  *stop = d.frameAbs - chunkAbs;
  return code;
}

double chunkNow(Direction& d) {
  if (d.chunkTime == 0) d.chunkTime = nowMs();
  return d.chunkTime;
}

// The pump's onFrameHeader: size limits always, rate limits unless a close is waiting for this frame to end.
int onFrameHeader(Direction& d) {
  const DirectionLimits& L = d.limits;
  bool closing = !d.pendingClose.empty();
  if (d.opcode >= 8) {
    if (d.opcode == 8 || closing || L.controlFramesPerSecond == 0) return 0;
    if (!d.controlBucket.made) d.controlBucket.make(L.controlFramesPerSecond, std::max(1.0, L.controlFramesPerSecond));
    if (d.controlBucket.take(1, chunkNow(d))) return 0;
    d.limitReason = R_LIMIT_CONTROL;
    return STOP_LIMIT;
  }
  if (L.maxMessageBytes > 0 && double(d.messageBytes) > L.maxMessageBytes) return STOP_TOO_BIG;
  if (L.maxFramesPerMessage > 0 && double(d.messageFrames) > L.maxFramesPerMessage) {
    d.limitReason = R_LIMIT_FRAMES;
    return STOP_LIMIT;
  }
  if (closing) return 0;
  if (d.messageFrames == 1 && L.messagesPerSecond > 0) {
    if (!d.messageBucket.made) d.messageBucket.make(L.messagesPerSecond, std::max(1.0, L.burstMessages));
    if (!d.messageBucket.take(1, chunkNow(d))) {
      d.limitReason = R_LIMIT_MESSAGES;
      return STOP_LIMIT;
    }
  }
  if (d.payloadLength > 0 && L.bytesPerSecond > 0) {
    if (!d.byteBucket.made) d.byteBucket.make(L.bytesPerSecond, std::max(1.0, L.bytesPerSecond));
    if (!d.byteBucket.take(double(d.payloadLength), chunkNow(d))) {
      d.limitReason = R_LIMIT_BYTES;
      return STOP_LIMIT;
    }
  }
  return 0;
}

void countMessage(Thread* th, Direction& d) {
  int dir = d.fromClient ? 0 : 1;
  count(th, d.fromClient ? C_MESSAGES_C2B : C_MESSAGES_B2C, 1);
  int b = 0;
  double bytes = double(d.messageBytes);
  while (b < SIZE_BUCKETS && bytes > MESSAGE_SIZE_BUCKETS[b]) b++;
  count(th, C_SIZE_BUCKETS + dir * (SIZE_BUCKETS + 1) + b, 1);
  count(th, C_SIZE_SUM + dir, bytes);
}

// The frame's last payload byte is consumed; `at` is the chunk offset just past it.
int frameEnd(Tunnel* t, Direction& d, int64_t at, int64_t chunkAbs, int64_t* stop) {
  d.state = S_HEADER;
  if (d.opcode >= 8) {
    count(t->thread, C_CONTROL_FRAMES, 1);
    if (d.opcode == 8) {
      if (!validClosePayload(d.controlBuf, d.controlLen)) return violate(t, d, V_INVALID_CLOSE_PAYLOAD, chunkAbs, stop);
      if (d.closeCodeSeen == 0) d.closeCodeSeen = d.controlLen >= 2 ? (d.controlBuf[0] << 8) | d.controlBuf[1] : 1005;
      *stop = at;
      return STOP_CLOSE;
    }
    return 0;
  }
  if (d.fin) {
    d.messages++;
    countMessage(t->thread, d);
    d.inMessage = false;
    d.messageOpcode = 0;
  }
  return 0;
}

int header(Tunnel* t, Direction& d, const uint8_t* buf, int64_t after, int64_t chunkAbs, int64_t* stop) {
  uint8_t b0 = buf[0], b1 = buf[1];
  bool fin = b0 & 0x80;
  int rsv = (b0 >> 4) & 7;
  int opcode = b0 & 0x0f;
  bool masked = b1 & 0x80;
  uint64_t length = b1 & 0x7f;
  int p = 2;
  int lengthViolation = 0;
  if (length == 126) {
    length = (uint64_t(buf[2]) << 8) | buf[3];
    p = 4;
    if (length < 126) lengthViolation = V_NON_MINIMAL_LENGTH;
  } else if (length == 127) {
    uint32_t hi = (uint32_t(buf[2]) << 24) | (uint32_t(buf[3]) << 16) | (uint32_t(buf[4]) << 8) | buf[5];
    uint32_t lo = (uint32_t(buf[6]) << 24) | (uint32_t(buf[7]) << 16) | (uint32_t(buf[8]) << 8) | buf[9];
    length = (uint64_t(hi) << 32) | lo;
    p = 10;
    if (hi >= 0x80000000u) lengthViolation = V_LENGTH_TOP_BIT;
    else if (hi >= 0x200000u) lengthViolation = V_FRAME_TOO_BIG;
    else if (hi == 0 && lo < 0x10000) lengthViolation = V_NON_MINIMAL_LENGTH;
  }
  d.fin = fin;
  d.opcode = uint8_t(opcode);
  d.masked = masked;
  d.payloadLength = length;
  if (masked) memcpy(d.maskKey, buf + p, 4);
  bool isControl = opcode >= 8;
  // §5.2: RSV bits need an extension; permessage-deflate only owns RSV1, on a message's first frame.
  if (rsv != 0 && (rsv != 4 || !t->rsv1Allowed || isControl || opcode == 0))
    return violate(t, d, V_RSV_WITHOUT_EXTENSION, chunkAbs, stop);
  if ((opcode >= 3 && opcode <= 7) || opcode >= 0xb) return violate(t, d, V_RESERVED_OPCODE, chunkAbs, stop);
  if (isControl) {
    // §5.5: control frames are never fragmented and carry at most 125 bytes.
    if (!fin) return violate(t, d, V_CONTROL_FRAGMENTED, chunkAbs, stop);
    if (length > MAX_CONTROL_PAYLOAD_BYTES) return violate(t, d, V_CONTROL_TOO_LONG, chunkAbs, stop);
  } else if (opcode == 0) {
    // §5.4: a continuation needs a message in progress.
    if (!d.inMessage) return violate(t, d, V_UNEXPECTED_CONTINUATION, chunkAbs, stop);
    d.messageBytes += length;
    d.messageFrames++;
  } else {
    if (d.inMessage) return violate(t, d, V_DATA_INSIDE_MESSAGE, chunkAbs, stop);
    d.inMessage = true;
    d.messageOpcode = uint8_t(opcode);
    d.messageBytes = length;
    d.messageFrames = 1;
  }
  if (masked != d.fromClient)
    return violate(t, d, masked ? V_MASKED_SERVER_FRAME : V_UNMASKED_CLIENT_FRAME, chunkAbs, stop);
  if (lengthViolation != 0) return violate(t, d, lengthViolation, chunkAbs, stop);
  int rc = onFrameHeader(d);
  if (rc != 0) {
    *stop = d.frameAbs - chunkAbs;
    return rc;
  }
  if (length == 0) {
    d.controlLen = 0;
    return frameEnd(t, d, after, chunkAbs, stop);
  }
  d.payloadLeft = length;
  if (isControl) {
    d.controlLen = 0;
    d.state = S_CONTROL_PAYLOAD;
  } else {
    d.state = S_PAYLOAD;
  }
  return 0;
}

// Scans chunk[start, end) (chunk offsets); 0 when all of it was scanned, else a violation or stop code with
// `*stop` the chunk offset of the offending frame's header (negative if it began in an earlier chunk) or, for
// STOP_CLOSE, just past the close frame.
int scan(Tunnel* t, Direction& d, const uint8_t* chunk, int64_t start, int64_t end, int64_t* stop) {
  int64_t chunkAbs = d.bytesAbs - start;  // stream position of chunk[0]
  if (d.state == S_FAILED) {
    *stop = start;
    return d.failCode;
  }
  int64_t i = start;
  while (i < end) {
    uint8_t state = d.state;
    if (state == S_PAYLOAD) {
      uint64_t avail = uint64_t(end - i);
      if (d.payloadLeft > avail) {
        d.payloadLeft -= avail;
        i = end;
        break;
      }
      i += int64_t(d.payloadLeft);
      d.payloadLeft = 0;
      int rc = frameEnd(t, d, i, chunkAbs, stop);
      if (rc != 0) {
        d.bytesAbs = chunkAbs + i;
        return rc;
      }
    } else if (state == S_HEADER) {
      int64_t avail = end - i;
      int hlen = avail >= 2 ? headerLengthOf(chunk[i + 1]) : MAX_HEADER_BYTES + 1;
      d.frameAbs = chunkAbs + i;
      if (avail >= hlen) {
        i += hlen;
        int rc = header(t, d, chunk + i - hlen, i, chunkAbs, stop);
        if (rc != 0) {
          d.bytesAbs = chunkAbs + i;
          return rc;
        }
      } else {
        memcpy(d.carry, chunk + i, size_t(avail));
        d.carryLen = uint8_t(avail);
        d.carryNeed = uint8_t(avail >= 2 ? hlen : 2);
        d.state = S_HEADER_PARTIAL;
        i = end;
      }
    } else if (state == S_CONTROL_PAYLOAD) {
      uint64_t take = std::min<uint64_t>(d.payloadLeft, uint64_t(end - i));
      memcpy(d.controlBuf + d.controlLen, chunk + i, take);
      d.controlLen = uint8_t(d.controlLen + take);
      d.payloadLeft -= take;
      i += int64_t(take);
      if (d.payloadLeft == 0) {
        if (d.masked)
          for (int j = 0; j < d.controlLen; j++) d.controlBuf[j] ^= d.maskKey[j & 3];
        int rc = frameEnd(t, d, i, chunkAbs, stop);
        if (rc != 0) {
          d.bytesAbs = chunkAbs + i;
          return rc;
        }
      }
    } else if (state == S_HEADER_PARTIAL) {
      while (d.carryLen < d.carryNeed && i < end) {
        d.carry[d.carryLen++] = chunk[i++];
        if (d.carryLen == 2) d.carryNeed = uint8_t(headerLengthOf(d.carry[1]));
      }
      if (d.carryLen < d.carryNeed) break;
      d.carryLen = 0;
      int rc = header(t, d, d.carry, i, chunkAbs, stop);
      if (rc != 0) {
        d.bytesAbs = chunkAbs + i;
        return rc;
      }
    } else {
      break;
    }
  }
  d.bytesAbs = chunkAbs + end;
  return 0;
}

// ---- the pump (Pump in tunnel.ts) ---------------------------------------------------------------------------------

void record(Tunnel* t, int reason, int initiator) {
  if (t->reason >= 0) return;
  t->reason = reason;
  t->initiator = initiator;
  t->closingSinceMs = nowMs();
}

void setDeadline(Tunnel* t, double atMs, int reason) {
  if (t->deadlineMs != 0 && t->deadlineMs <= atMs) return;
  if (t->deadlineMs == 0) t->thread->timed.push_back(t);
  t->deadlineMs = atMs;
  t->deadlineReason = reason;
}

bool forward(Tunnel* t, Direction& d, const uint8_t* chunk, int64_t a, int64_t b) {
  if (b <= a) return true;
  Side& dst = t->sides[d.dst];
  if (dst.fd < 0 || dst.shut) return true;
  d.bytes += uint64_t(b - a);
  count(t->thread, d.fromClient ? C_BYTES_C2B : C_BYTES_B2C, double(b - a));
  return writeTo(t, d.dst, chunk + a, size_t(b - a));
}

// Sends a close frame toward `d`'s destination at the next frame boundary (now if the stream is at one).
void sendClose(Tunnel* t, Direction& d, int code, const char* reason, bool streamAtBoundary) {
  if (d.closedToDest || !d.pendingClose.empty()) return;
  std::string frame = closeFrame(code, reason, d.fromClient);
  if (d.halted) {
    // Nothing more comes from the source; mid-frame, no close frame can follow and the TCP close has to do.
    if (streamAtBoundary) writeTo(t, d.dst, reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    d.closedToDest = true;
    return;
  }
  if (d.state == S_HEADER) {
    writeTo(t, d.dst, reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    d.closedToDest = true;
    return;
  }
  d.pendingClose = frame;
  setDeadline(t, nowMs() + CLOSE_FRAME_DEADLINE_MS, R_CLOSE_DEADLINE);
}

void closeBecause(Tunnel* t, Direction& offender, int code, const char* reason, int otherCode, bool atBoundary,
                  int logReason) {
  record(t, logReason, I_PROXY);
  Direction& other = t->dirs[offender.fromClient ? 1 : 0];
  if (t->proxyCloseCode == 0) t->proxyCloseCode = offender.fromClient ? code : otherCode;
  sendClose(t, other, code, reason, true);
  sendClose(t, offender, otherCode, offender.fromClient ? "client closed by proxy" : reason, atBoundary);
  maybeEndSockets(t);
}

void stopped(Tunnel* t, Direction& d, int rc, bool atBoundary) {
  d.halted = true;
  int otherSide = d.fromClient ? 1000 : 1014;
  if (rc < STOP_LIMIT) {
    char reason[64];
    snprintf(reason, sizeof reason, "protocol error: %s", VIOLATION_KIND[rc]);
    closeBecause(t, d, rc == V_FRAME_TOO_BIG ? 1009 : 1002, reason, d.fromClient ? 1011 : 1014, atBoundary,
                 R_VIOLATION_BASE + rc);
  } else if (rc == STOP_TOO_BIG) {
    count(t->thread, C_LIMITS, 1);
    closeBecause(t, d, 1009, "message too big", otherSide, atBoundary, R_MESSAGE_TOO_BIG);
  } else {
    count(t->thread, C_LIMITS, 1);
    char reason[64];
    snprintf(reason, sizeof reason, "limit exceeded: %s", REASONS[d.limitReason] + 6);
    closeBecause(t, d, 1008, reason, otherSide, atBoundary, d.limitReason);
  }
}

void closeFramePassed(Tunnel* t, Direction& d) {
  record(t, d.fromClient ? R_CLIENT_CLOSE_FRAME : R_BACKEND_CLOSE_FRAME, d.fromClient ? I_CLIENT : I_BACKEND);
  setDeadline(t, t->closingSinceMs + CLOSE_REPLY_TIMEOUT_MS, R_CLOSE_REPLY_TIMEOUT);
  maybeEndSockets(t);
}

void flushPendingClose(Tunnel* t, Direction& d) {
  if (d.pendingClose.empty()) return;
  std::string frame;
  frame.swap(d.pendingClose);
  writeTo(t, d.dst, reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
  d.closedToDest = true;
  maybeEndSockets(t);
}

// While a close frame waits: forward only up to the end of the frame in flight, then send the close.
void pushUntilBoundary(Tunnel* t, Direction& d, const uint8_t* chunk, int64_t n) {
  int64_t offset = 0;
  while (offset < n) {
    int64_t left = d.state == S_HEADER ? 0 : (d.state == S_PAYLOAD || d.state == S_CONTROL_PAYLOAD) ? int64_t(d.payloadLeft) : -1;
    if (left == 0) break;
    int64_t take = left < 0 ? 1 : std::min(left, n - offset);
    int64_t stop = 0;
    int rc = scan(t, d, chunk, offset, offset + take, &stop);
    if (rc != 0 && rc != STOP_CLOSE) {
      d.halted = true;
      d.pendingClose.clear();
      d.closedToDest = true;
      maybeEndSockets(t);
      return;
    }
    forward(t, d, chunk, offset, offset + take);
    offset += take;
    if (rc == STOP_CLOSE) {
      // The peer closed first: its close frame is the one this direction carries, ours is not sent.
      d.halted = true;
      d.pendingClose.clear();
      d.closedToDest = true;
      closeFramePassed(t, d);
      return;
    }
  }
  if (d.state == S_HEADER) flushPendingClose(t, d);
}

void push(Tunnel* t, Direction& d, const uint8_t* chunk, int64_t n) {
  if (d.halted || d.closedToDest) return;  // read and dropped: how a FIN after a close is still seen
  d.chunkTime = 0;
  if (!d.pendingClose.empty()) {
    pushUntilBoundary(t, d, chunk, n);
    return;
  }
  int64_t stop = 0;
  int rc = scan(t, d, chunk, 0, n, &stop);
  if (rc == 0) {
    forward(t, d, chunk, 0, n);
  } else if (rc == STOP_CLOSE) {
    // The close frame goes through; whatever follows it is dropped.
    forward(t, d, chunk, 0, stop);
    d.halted = true;
  } else {
    bool atBoundary = stop >= 0;
    if (atBoundary) forward(t, d, chunk, 0, stop);
    stopped(t, d, rc, atBoundary);
    return;
  }
  if (d.closeCodeSeen != 0 && !d.closedToDest) {
    d.closedToDest = true;
    closeFramePassed(t, d);
  }
}

// ---- ending (Tunnel in tunnel.ts) -------------------------------------------------------------------------------

bool dirDone(Tunnel* t, Direction& d) { return d.closedToDest || d.halted || t->sides[d.dst].fd < 0; }

void maybeEndSockets(Tunnel* t) {
  if (t->finished) return;
  Direction& c2b = t->dirs[0];
  Direction& b2c = t->dirs[1];
  if (!dirDone(t, c2b) || !dirDone(t, b2c) || !c2b.pendingClose.empty() || !b2c.pendingClose.empty()) return;
  if (c2b.closeCodeSeen != 0 && b2c.closeCodeSeen != 0 && c2b.closedToDest && b2c.closedToDest &&
      !t->sides[0].queued() && !t->sides[1].queued()) {
    // Both close frames went through and nothing waits: close(2) at once (the JS tunnel does the same).
    t->ending = true;
    closeSide(t, 0);
    closeSide(t, 1);
    return;
  }
  endSockets(t);
}

// Half-closes both sockets once their queues are flushed; whatever is left after the linger is closed.
void endSockets(Tunnel* t) {
  bool first = !t->ending;
  t->ending = true;
  for (int i = 0; i < 2; i++) {
    t->sides[i].wantShutdown = true;
    shutdownIfDue(t, i);
  }
  if (first && !t->finished) setDeadline(t, nowMs() + TEARDOWN_LINGER_MS, -1);
}

// Side `i` sent FIN (reason *_closed), failed (reason *_error) or was written to in vain: the survivor hears
// why, with a close code, unless a close frame already went.
void sideGone(Tunnel* t, int i, int reason) {
  bool error = reason == R_CLIENT_ERROR || reason == R_BACKEND_ERROR;
  Direction& gone = t->dirs[i];        // carried the vanished peer's frames
  Direction& other = t->dirs[1 - i];   // carried frames to the vanished peer
  if (error) {
    closeSide(t, i);
    if (t->finished) return;
  } else {
    t->sides[i].eof = true;
    updateInterest(t->sides[i]);
  }
  if (gone.sourceGone) {
    if (t->sides[i].fd >= 0 && t->sides[i].shut) closeSide(t, i);
    return;
  }
  gone.sourceGone = true;
  gone.halted = true;
  other.closedToDest = true;
  other.pendingClose.clear();
  if (gone.closeCodeSeen == 0 && !t->ending && !gone.closedToDest) {
    bool fromClient = i == 0;
    record(t, reason, fromClient ? I_CLIENT : I_BACKEND);
    int code = fromClient ? 1001 : 1014;
    if (!fromClient && t->proxyCloseCode == 0) t->proxyCloseCode = code;
    sendClose(t, gone, code, fromClient ? "client went away" : "backend connection lost", gone.state == S_HEADER);
  }
  if (t->finished) return;
  endSockets(t);
  if (t->sides[i].fd >= 0 && t->sides[i].shut && t->sides[i].eof) closeSide(t, i);
}

int closeCodeOf(Tunnel* t) {
  if (t->initiator == I_PROXY && t->proxyCloseCode != 0) return t->proxyCloseCode;
  int first = t->initiator == I_BACKEND ? t->dirs[1].closeCodeSeen : t->dirs[0].closeCodeSeen;
  if (first) return first;
  if (t->proxyCloseCode) return t->proxyCloseCode;
  if (t->dirs[0].closeCodeSeen) return t->dirs[0].closeCodeSeen;
  if (t->dirs[1].closeCodeSeen) return t->dirs[1].closeCodeSeen;
  return 1006;
}

void dropTimed(Tunnel* t) {
  if (t->deadlineMs == 0) return;
  t->deadlineMs = 0;
  std::vector<Tunnel*>& timed = t->thread->timed;
  for (size_t k = 0; k < timed.size(); k++)
    if (timed[k] == t) {
      timed[k] = timed.back();
      timed.pop_back();
      return;
    }
}

void finishTunnel(Tunnel* t) {
  if (t->finished) return;
  t->finished = true;
  Thread* th = t->thread;
  if (t->phase == PHASE_TUNNEL)
    th->ended.push_back(Ended{t->id, double(closeCodeOf(t)), double(t->initiator),
                              double(t->reason < 0 ? R_CLOSED : t->reason), double(t->dirs[0].bytes),
                              double(t->dirs[1].bytes), double(t->dirs[0].messages), double(t->dirs[1].messages)});
  else
    count(th, C_REFUSED, 1);
  if (t->phase == PHASE_DECIDING) th->deciding.erase(uint64_t(t->id));
  freeHandshake(t);
  if (t->prev) t->prev->next = t->next;
  else th->head = t->next;
  if (t->next) t->next->prev = t->prev;
  dropTimed(t);
  if (t->counted) {
    count(th, C_ACTIVE, -1);
    count(th, C_ENDED, 1);
  }
  th->dead.push_back(t);
}

void closeWithCode(Tunnel* t, int code) {
  if (t->finished || t->phase != PHASE_TUNNEL) return;
  record(t, R_PROXY_CLOSE, I_PROXY);
  if (t->proxyCloseCode == 0) t->proxyCloseCode = code;
  sendClose(t, t->dirs[1], code, "going away", true);
  sendClose(t, t->dirs[0], 1001, "going away", true);
  maybeEndSockets(t);
}

// ---- the thread -------------------------------------------------------------------------------------------------

// ---- splice(2) for large payloads (off unless start() was given a threshold) ---------------------------------------

size_t spliceMinBytes = 0;
constexpr size_t SPLICE_CHUNK_BYTES = 256 * 1024;
constexpr int PIPE_BYTES = 1024 * 1024;

// In the middle of a data frame whose header was scanned and with at least spliceMinBytes of payload left, the
// payload goes socket → pipe → socket and never enters user space. What the destination refuses is read out of the
// pipe into its queue (the same copy as a refused send), so the thread's pipe is empty after every call.
// Returns 1 when it moved bytes, 0 when it does not apply (or for recv to see EOF or an error), -1 when the source
// has nothing to read now.
int trySplice(Tunnel* t, int i) {
  Direction& d = t->dirs[i];
  Side& src = t->sides[i];
  Side& dst = t->sides[d.dst];
  if (spliceMinBytes == 0 || d.state != S_PAYLOAD || d.payloadLeft < spliceMinBytes || d.halted || d.closedToDest ||
      !d.pendingClose.empty() || dst.fd < 0 || dst.shut || dst.queued())
    return 0;
  Thread* th = t->thread;
  size_t want = size_t(std::min<uint64_t>(d.payloadLeft, SPLICE_CHUNK_BYTES));
  ssize_t n = splice(src.fd, nullptr, th->pipe[1], nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
  if (n <= 0) return 0;
  size_t out = 0;
  bool failed = false;
  while (out < size_t(n)) {
    ssize_t m = splice(th->pipe[0], nullptr, dst.fd, nullptr, size_t(n) - out, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (m > 0) {
      out += size_t(m);
      continue;
    }
    failed = m < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
    break;
  }
  if (out < size_t(n)) {
    std::string rest(size_t(n) - out, '\0');
    size_t got = 0;
    while (got < rest.size()) {
      ssize_t r = read(th->pipe[0], &rest[got], rest.size() - got);
      if (r <= 0) break;
      got += size_t(r);
    }
    if (!failed) {
      dst.queue.append(rest.data(), got);
      count(th, C_QUEUED_BYTES, double(got));
      src.readStopped = true;
      updateInterest(src);
      updateInterest(dst);
    }
  }
  d.payloadLeft -= uint64_t(n);
  d.bytesAbs += n;
  d.bytes += uint64_t(n);
  count(th, d.fromClient ? C_BYTES_C2B : C_BYTES_B2C, double(n));
  count(th, C_SPLICED_BYTES, double(out));
  if (d.payloadLeft == 0) {
    int64_t stop = 0;
    frameEnd(t, d, 0, 0, &stop);  // a data frame's end: counts the message, never stops
  }
  if (failed) sideGone(t, d.dst, d.dst == 0 ? R_CLIENT_ERROR : R_BACKEND_ERROR);
  return 1;
}

void onReadable(Tunnel* t, int i) {
  Side& s = t->sides[i];
  uint8_t* buf = t->thread->readBuffer;
  for (int k = 0; k < MAX_READS_PER_EVENT && s.fd >= 0 && !s.eof && !t->finished; k++) {
    int spliced = trySplice(t, i);
    if (spliced < 0) return;
    if (spliced > 0) {
      if (s.readStopped) return;
      continue;
    }
    ssize_t n = recv(s.fd, buf, READ_BUFFER_BYTES, MSG_DONTWAIT);
    if (n > 0) {
      push(t, t->dirs[i], buf, n);
      if (size_t(n) < READ_BUFFER_BYTES || s.readStopped) return;
      continue;
    }
    if (n == 0) {
      sideGone(t, i, i == 0 ? R_CLIENT_CLOSED : R_BACKEND_CLOSED);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    sideGone(t, i, i == 0 ? R_CLIENT_ERROR : R_BACKEND_ERROR);
    return;
  }
}

void adopt(Thread* th, Tunnel* t) {
  t->next = th->head;
  if (th->head) th->head->prev = t;
  th->head = t;
  count(th, C_ACTIVE, 1);
  count(th, C_OPENED, 1);
  for (int i = 0; i < 2; i++) {
    Side& s = t->sides[i];
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &s;
    s.interest = EPOLLIN;
    if (epoll_ctl(th->epfd, EPOLL_CTL_ADD, s.fd, &ev) != 0) {
      record(t, i == 0 ? R_CLIENT_ERROR : R_BACKEND_ERROR, i == 0 ? I_CLIENT : I_BACKEND);
      closeSide(t, 0);
      closeSide(t, 1);
      return;
    }
  }
  // Bytes that came with the handshake: the backend's first (glued to its 101), then the client's.
  for (int src : {1, 0}) {
    std::string early;
    early.swap(t->early[src]);
    if (!early.empty() && !t->finished)
      push(t, t->dirs[src], reinterpret_cast<const uint8_t*>(early.data()), int64_t(early.size()));
  }
}

void checkDeadlines(Thread* th) {
  double now = nowMs();
  std::vector<Tunnel*> keep;
  for (Tunnel* t : th->timed) {
    if (t->finished) continue;
    if (t->deadlineMs > now) {
      keep.push_back(t);
      continue;
    }
    t->deadlineMs = 0;
    if (t->deadlineReason >= 0) record(t, t->deadlineReason, I_PROXY);
    closeSide(t, 0);
    closeSide(t, 1);
  }
  th->timed.swap(keep);
}

// ---- the native accept + upgrade path (the second half of the experiment) ----------------------------------------
//
// Each pump thread accepts on its own SO_REUSEPORT socket, reads the upgrade head (whole, at most 8 KiB), checks it
// (a strict subset of src/handshake/upgrade-head.ts and validate.ts: GET, origin-form target, HTTP/1.1, Host,
// Upgrade: websocket, Connection: upgrade, a 16-byte Sec-WebSocket-Key, version 13), picks a backend from the
// routing table JS published (longest path prefix; immutable, swapped whole), sends the backend the request with
// forwarding headers, verifies its 101 (Upgrade, Connection, Sec-WebSocket-Accept) and forwards it, and then the
// connection is a tunnel like any other. Refusals get a status line and are closed. Not here: TLS, PROXY protocol,
// hashing, retries, health, origin lists, auth, HTTP on WebSocket routes: see README.md for what that would take.

constexpr size_t MAX_HEAD_BYTES = 8 * 1024;
constexpr double HANDSHAKE_TIMEOUT_MS = 10000;
const char WEBSOCKET_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

DirectionLimits nativeLimits[2] = {};  // limits of natively accepted connections (c2b, b2c), set by listen()

struct Route {
  std::string prefix;
  sockaddr_in backend;
};
using RouteTable = std::vector<Route>;
std::shared_ptr<const RouteTable> routes;  // read and swapped with std::atomic_load / std::atomic_store

struct Handshake {
  std::string buffer;       // the client's head, later the backend's answer
  std::string request;      // the head to send the backend
  std::string accept;       // the Sec-WebSocket-Accept the backend must answer
  std::string clientEarly;  // bytes after the client's head
};

void dialBackend(Tunnel* t, const sockaddr_in& backend);

void freeHandshake(Tunnel* t) {
  delete t->handshake;
  t->handshake = nullptr;
}

// SHA-1 (FIPS 180-4) of a short message, for Sec-WebSocket-Accept.
void sha1(const uint8_t* msg, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m(reinterpret_cast<const char*>(msg), len);
  m.push_back(char(0x80));
  while (m.size() % 64 != 56) m.push_back(0);
  uint64_t bits = uint64_t(len) * 8;
  for (int i = 7; i >= 0; i--) m.push_back(char(bits >> (i * 8)));
  auto rol = [](uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++) {
      const uint8_t* p = reinterpret_cast<const uint8_t*>(m.data()) + off + i * 4;
      w[i] = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
    }
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t tmp = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = tmp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++) out[i * 4 + j] = uint8_t(h[i] >> (24 - j * 8));
}

std::string base64(const uint8_t* p, size_t n) {
  static const char* A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = uint32_t(p[i]) << 16 | (i + 1 < n ? uint32_t(p[i + 1]) << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out.push_back(A[(v >> 18) & 63]);
    out.push_back(A[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? A[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? A[v & 63] : '=');
  }
  return out;
}

std::string acceptFor(const std::string& key) {
  std::string s = key + WEBSOCKET_GUID;
  uint8_t digest[20];
  sha1(reinterpret_cast<const uint8_t*>(s.data()), s.size(), digest);
  return base64(digest, 20);
}

bool equalsIgnoreCase(const char* a, size_t n, const char* b) {
  if (strlen(b) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (tolower(uint8_t(a[i])) != b[i]) return false;
  return true;
}

// Whether the comma-separated `list` holds `token` (case-insensitive), as hasToken in validate.ts.
bool hasToken(const std::string& list, const char* token) {
  size_t i = 0;
  while (i <= list.size()) {
    size_t comma = list.find(',', i);
    if (comma == std::string::npos) comma = list.size();
    size_t a = i, b = comma;
    while (a < b && (list[a] == ' ' || list[a] == '\t')) a++;
    while (b > a && (list[b - 1] == ' ' || list[b - 1] == '\t')) b--;
    if (equalsIgnoreCase(list.data() + a, b - a, token)) return true;
    i = comma + 1;
  }
  return false;
}

bool hopByHop(const char* name, size_t n) {
  static const char* const names[] = {"connection", "upgrade", "keep-alive", "proxy-connection", "te", "trailer",
                                      "transfer-encoding", "content-length", "host"};
  for (const char* h : names)
    if (equalsIgnoreCase(name, n, h)) return true;
  return false;
}

// Calls `onHeader(name, nameLen, value, valueLen)` for each header line of the head at [from, end); false if a
// line is malformed.
template <typename F>
bool eachHeader(const std::string& head, size_t from, size_t end, F onHeader) {
  while (from < end) {
    size_t eol = head.find("\r\n", from);
    if (eol == std::string::npos || eol > end) return false;
    if (eol == from) break;
    size_t colon = head.find(':', from);
    if (colon == std::string::npos || colon >= eol || colon == from) return false;
    size_t v = colon + 1, ve = eol;
    while (v < ve && (head[v] == ' ' || head[v] == '\t')) v++;
    while (ve > v && (head[ve - 1] == ' ' || head[ve - 1] == '\t')) ve--;
    for (size_t k = from; k < colon; k++)
      if (head[k] <= ' ' || head[k] >= 127) return false;
    onHeader(head.data() + from, colon - from, head.data() + v, ve - v);
    from = eol + 2;
  }
  return true;
}

void refuseHandshake(Tunnel* t, int status, const char* text) {
  char response[160];
  int n = snprintf(response, sizeof response,
                   "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n%s\r\n", status, text,
                   status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "");
  if (t->sides[0].fd >= 0) {
    if (send(t->sides[0].fd, response, size_t(n), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    }
    shutdown(t->sides[0].fd, SHUT_WR);
  }
  closeSide(t, 1);
  closeSide(t, 0);
}

void setSideInterest(Side& s, uint32_t want) {
  if (s.fd < 0 || want == s.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.ptr = &s;
  epoll_ctl(s.tunnel->thread->epfd, EPOLL_CTL_MOD, s.fd, &ev);
  s.interest = want;
}

// The client's head is complete at `headEnd`: check it, route it, and dial the backend.
bool jsDecides = false;

// The JS side decides (listen() with a decide callback): the head goes to JS after this batch, the client waits.
void askJs(Tunnel* t, size_t headEnd) {
  Handshake& h = *t->handshake;
  sockaddr_in peer{};
  socklen_t plen = sizeof peer;
  uint32_t ip = 0;
  if (getpeername(t->sides[0].fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) ip = ntohl(peer.sin_addr.s_addr);
  t->thread->asks.push_back(Ask{uint64_t(t->id), t->thread->index, ip, h.buffer.substr(0, headEnd)});
  h.clientEarly = h.buffer.substr(headEnd);
  h.buffer.clear();
  t->thread->deciding[uint64_t(t->id)] = t;
  setSideInterest(t->sides[0], 0);
  t->phase = PHASE_DECIDING;
}

void applyDecision(Thread* th, Decision& d) {
  auto it = th->deciding.find(d.id);
  if (it == th->deciding.end()) return;  // the client left meanwhile
  Tunnel* t = it->second;
  th->deciding.erase(it);
  t->phase = PHASE_HEAD;
  if (d.status != 0) return refuseHandshake(t, d.status, "Refused");
  t->handshake->request.swap(d.request);
  t->handshake->accept.swap(d.accept);
  sockaddr_in backend{};
  backend.sin_family = AF_INET;
  backend.sin_port = htons(uint16_t(d.port));
  backend.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  dialBackend(t, backend);
}

void callHeads(napi_env env, napi_value js, void*, void* data) {
  auto* batch = static_cast<std::vector<Ask>*>(data);
  if (env != nullptr && js != nullptr && !batch->empty()) {
    size_t total = 0;
    for (const Ask& a : *batch) total += a.head.size();
    napi_value records, heads, argv[2], undefined;
    void* raw;
    napi_value ab;
    napi_create_arraybuffer(env, batch->size() * 5 * sizeof(double), &raw, &ab);
    double* r = static_cast<double*>(raw);
    void* bytes;
    napi_create_buffer(env, total, &bytes, &heads);
    size_t at = 0;
    for (const Ask& a : *batch) {
      *r++ = double(a.id);
      *r++ = double(a.thread);
      *r++ = double(a.ip);
      *r++ = double(at);
      *r++ = double(a.head.size());
      memcpy(static_cast<char*>(bytes) + at, a.head.data(), a.head.size());
      at += a.head.size();
    }
    napi_create_typedarray(env, napi_float64_array, batch->size() * 5, ab, 0, &records);
    argv[0] = records;
    argv[1] = heads;
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, js, 2, argv, nullptr);
  }
  delete batch;
}

void onClientHead(Tunnel* t, size_t headEnd) {
  if (jsDecides) return askJs(t, headEnd);
  Handshake& h = *t->handshake;
  const std::string& head = h.buffer;
  if (head.compare(0, 5, "GET /") != 0) return refuseHandshake(t, 400, "Bad Request");
  size_t sp = head.find(' ', 4);
  size_t eol = head.find("\r\n");
  if (sp == std::string::npos || sp > eol || head.compare(sp, 11, " HTTP/1.1\r\n") != 0)
    return refuseHandshake(t, 400, "Bad Request");
  std::string target = head.substr(4, sp - 4);
  for (char c : target)
    if (c <= ' ' || c >= 127 || c == '#') return refuseHandshake(t, 400, "Bad Request");
  std::string host, upgrade, connection, key, version;
  std::string forwarded;
  bool dup = false;
  bool ok = eachHeader(head, eol + 2, headEnd, [&](const char* n, size_t nl, const char* v, size_t vl) {
    std::string value(v, vl);
    std::string* slot = equalsIgnoreCase(n, nl, "host")                    ? &host
                        : equalsIgnoreCase(n, nl, "upgrade")               ? &upgrade
                        : equalsIgnoreCase(n, nl, "connection")            ? &connection
                        : equalsIgnoreCase(n, nl, "sec-websocket-key")     ? &key
                        : equalsIgnoreCase(n, nl, "sec-websocket-version") ? &version
                                                                           : nullptr;
    if (slot != nullptr) {
      if (!slot->empty()) dup = true;
      *slot = value;
    }
    if (!hopByHop(n, nl)) forwarded.append(n, nl).append(": ").append(value).append("\r\n");
  });
  if (!ok || dup || host.empty()) return refuseHandshake(t, 400, "Bad Request");
  if (!equalsIgnoreCase(upgrade.data(), upgrade.size(), "websocket") || !hasToken(connection, "upgrade"))
    return refuseHandshake(t, 400, "Bad Request");
  if (version != "13") return refuseHandshake(t, 426, "Upgrade Required");
  // §4.2.1: the key is 16 bytes in base64, 24 characters ending in "==".
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return refuseHandshake(t, 400, "Bad Request");
  std::shared_ptr<const RouteTable> table = std::atomic_load(&routes);
  const Route* route = nullptr;
  if (table)
    for (const Route& r : *table)
      if (target.compare(0, r.prefix.size(), r.prefix) == 0 && (route == nullptr || r.prefix.size() > route->prefix.size()))
        route = &r;
  if (route == nullptr) return refuseHandshake(t, 404, "Not Found");

  sockaddr_in peer{};
  socklen_t plen = sizeof peer;
  char ip[INET_ADDRSTRLEN] = "";
  if (getpeername(t->sides[0].fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0)
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
  h.request = "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + forwarded;
  h.request += std::string("X-Forwarded-For: ") + ip + "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: " + host +
               "\r\nForwarded: for=" + ip + ";proto=http;host=\"" + host + "\"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  h.accept = acceptFor(key);
  h.clientEarly = head.substr(headEnd);
  h.buffer.clear();
  dialBackend(t, route->backend);
}

// Connects to the backend; the client waits unread meanwhile.
void dialBackend(Tunnel* t, const sockaddr_in& backend) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return refuseHandshake(t, 502, "Bad Gateway");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&backend), sizeof backend) != 0 &&
      errno != EINPROGRESS) {
    close(fd);
    return refuseHandshake(t, 502, "Bad Gateway");
  }
  Side& b = t->sides[1];
  b.fd = fd;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.ptr = &b;
  b.interest = EPOLLOUT;
  epoll_ctl(t->thread->epfd, EPOLL_CTL_ADD, fd, &ev);
  // The client waits unread until the 101 (its early bytes stay in the kernel, as wsgate keeps it paused).
  setSideInterest(t->sides[0], 0);
  t->phase = PHASE_CONNECTING;
}

// The backend's answer is complete at `headEnd`: verify the 101 (§4.1), forward it, and start the tunnel.
void onBackendHead(Tunnel* t, size_t headEnd) {
  Handshake& h = *t->handshake;
  const std::string& head = h.buffer;
  size_t eol = head.find("\r\n");
  if (head.compare(0, 13, "HTTP/1.1 101 ") != 0 && head.compare(0, 14, "HTTP/1.1 101\r\n") != 0)
    return refuseHandshake(t, 502, "Bad Gateway");
  std::string upgrade, connection, accept;
  bool ok = eachHeader(head, eol + 2, headEnd, [&](const char* n, size_t nl, const char* v, size_t vl) {
    if (equalsIgnoreCase(n, nl, "upgrade")) upgrade.assign(v, vl);
    else if (equalsIgnoreCase(n, nl, "connection")) connection.assign(v, vl);
    else if (equalsIgnoreCase(n, nl, "sec-websocket-accept")) accept.assign(v, vl);
  });
  if (!ok || !equalsIgnoreCase(upgrade.data(), upgrade.size(), "websocket") || !hasToken(connection, "upgrade") ||
      accept != h.accept)
    return refuseHandshake(t, 502, "Bad Gateway");
  ssize_t w = send(t->sides[0].fd, head.data(), headEnd, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w != ssize_t(headEnd)) return refuseHandshake(t, 502, "Bad Gateway");
  t->early[1] = head.substr(headEnd);
  t->early[0].swap(h.clientEarly);
  freeHandshake(t);
  t->phase = PHASE_TUNNEL;
  t->counted = true;
  dropTimed(t);  // the handshake deadline no longer applies
  count(t->thread, C_ACTIVE, 1);
  count(t->thread, C_OPENED, 1);
  setSideInterest(t->sides[0], EPOLLIN);
  setSideInterest(t->sides[1], EPOLLIN);
  for (int src : {1, 0}) {
    std::string early;
    early.swap(t->early[src]);
    if (!early.empty() && !t->finished)
      push(t, t->dirs[src], reinterpret_cast<const uint8_t*>(early.data()), int64_t(early.size()));
  }
}

// Reads into the handshake buffer; returns the head's end (past its blank line), 0 if not complete yet, or -1 when
// the connection failed or the head is too large (the caller refuses or closes).
ssize_t readHead(Tunnel* t, int i) {
  Handshake& h = *t->handshake;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(t->sides[i].fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      h.buffer.append(buf, size_t(n));
      if (h.buffer.size() > MAX_HEAD_BYTES) return -1;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    return -1;  // EOF or error before a complete head
  }
  size_t end = h.buffer.find("\r\n\r\n");
  return end == std::string::npos ? 0 : ssize_t(end + 4);
}

void onHandshakeEvent(Tunnel* t, int i, uint32_t ev) {
  if (i == 0 && t->phase != PHASE_HEAD) {
    // The client hung up while its backend was dialled or answering.
    if (ev & (EPOLLERR | EPOLLHUP)) {
      closeSide(t, 1);
      closeSide(t, 0);
    }
    return;
  }
  if (t->phase == PHASE_HEAD) {
    ssize_t end = readHead(t, 0);
    if (end < 0) {
      if (t->handshake->buffer.size() > MAX_HEAD_BYTES) return refuseHandshake(t, 431, "Request Header Fields Too Large");
      closeSide(t, 0);
      return;
    }
    if (end > 0) onClientHead(t, size_t(end));
    return;
  }
  if (t->phase == PHASE_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(t->sides[1].fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (ev & EPOLLERR)) return refuseHandshake(t, 502, "Bad Gateway");
    const std::string& req = t->handshake->request;
    if (send(t->sides[1].fd, req.data(), req.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != ssize_t(req.size()))
      return refuseHandshake(t, 502, "Bad Gateway");
    t->phase = PHASE_RESPONSE;
    setSideInterest(t->sides[1], EPOLLIN);
    return;
  }
  ssize_t end = readHead(t, 1);
  if (end < 0) return refuseHandshake(t, 502, "Bad Gateway");
  if (end > 0) onBackendHead(t, size_t(end));
}

void acceptAll(Thread* th) {
  for (int k = 0; k < 64; k++) {
    int fd = accept4(th->listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or an error the next readiness retries
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Tunnel* t = new Tunnel();
    t->thread = th;
    t->id = double(nextId.fetch_add(1));
    t->phase = PHASE_HEAD;
    t->counted = false;
    t->handshake = new Handshake();
    t->rsv1Allowed = false;
    for (int i = 0; i < 2; i++) {
      t->sides[i].tunnel = t;
      t->sides[i].index = i;
      Direction& d = t->dirs[i];
      d.fromClient = i == 0;
      d.src = i;
      d.dst = 1 - i;
      d.limits = nativeLimits[i];
    }
    t->sides[0].fd = fd;
    t->next = th->head;
    if (th->head) th->head->prev = t;
    th->head = t;
    count(th, C_ACCEPTED, 1);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &t->sides[0];
    t->sides[0].interest = EPOLLIN;
    epoll_ctl(th->epfd, EPOLL_CTL_ADD, fd, &ev);
    setDeadline(t, nowMs() + HANDSHAKE_TIMEOUT_MS, R_HANDSHAKE_TIMEOUT);
  }
}

void callEnded(napi_env env, napi_value js, void*, void* data) {
  auto* batch = static_cast<std::vector<Ended>*>(data);
  if (env != nullptr && js != nullptr) {
    napi_value ab, arr, undefined;
    void* raw;
    size_t n = batch->size() * 8;
    napi_create_arraybuffer(env, n * sizeof(double), &raw, &ab);
    memcpy(raw, batch->data(), n * sizeof(double));
    napi_create_typedarray(env, napi_float64_array, n, ab, 0, &arr);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, js, 1, &arr, nullptr);
  }
  delete batch;
}

void* threadMain(void* arg) {
  Thread* th = static_cast<Thread*>(arg);
  epoll_event events[256];
  for (;;) {
    int timeout = th->timed.empty() ? -1 : DEADLINE_CHECK_MS;
    int n = epoll_wait(th->epfd, events, 256, timeout);
    if (n < 0 && errno != EINTR) break;
    for (int k = 0; k < n; k++) {
      if (events[k].data.ptr == nullptr) {
        uint64_t v;
        if (read(th->wakefd, &v, 8) < 0) {
        }
        std::vector<Tunnel*> inbox;
        std::vector<int> drains;
        std::vector<Decision> decisions;
        {
          std::lock_guard<std::mutex> lock(th->mutex);
          inbox.swap(th->inbox);
          drains.swap(th->drainCodes);
          decisions.swap(th->decisions);
        }
        for (Tunnel* t : inbox) adopt(th, t);
        for (Decision& d : decisions) applyDecision(th, d);
        for (int code : drains)
          for (Tunnel* t = th->head; t != nullptr;) {
            Tunnel* next = t->next;
            closeWithCode(t, code);
            t = next;
          }
        continue;
      }
      if (events[k].data.ptr == &th->listenFd) {
        acceptAll(th);
        continue;
      }
      Side* s = static_cast<Side*>(events[k].data.ptr);
      Tunnel* t = s->tunnel;
      if (t->finished || s->fd < 0) continue;
      uint32_t ev = events[k].events;
      if (t->phase != PHASE_TUNNEL) {
        onHandshakeEvent(t, s->index, ev);
        continue;
      }
      if (ev & EPOLLOUT) onWritable(t, s->index);
      if (t->finished || s->fd < 0) continue;
      if ((ev & EPOLLIN) || ((ev & (EPOLLERR | EPOLLHUP)) && !s->eof)) onReadable(t, s->index);
      else if (ev & (EPOLLERR | EPOLLHUP)) sideGone(t, s->index, s->index == 0 ? R_CLIENT_ERROR : R_BACKEND_ERROR);
    }
    if (!th->timed.empty()) {
      // At most every DEADLINE_CHECK_MS: deadlines are coarse, and a busy thread loops far more often.
      double now = nowMs();
      if (now >= th->nextDeadlineCheckMs) {
        th->nextDeadlineCheckMs = now + DEADLINE_CHECK_MS;
        checkDeadlines(th);
      }
    }
    for (Tunnel* t : th->dead) delete t;
    th->dead.clear();
    if (!th->asks.empty()) {
      auto* batch = new std::vector<Ask>();
      batch->swap(th->asks);
      if (napi_call_threadsafe_function(th->onHeads, batch, napi_tsfn_nonblocking) != napi_ok) delete batch;
    }
    if (!th->ended.empty()) {
      auto* batch = new std::vector<Ended>();
      batch->swap(th->ended);
      if (napi_call_threadsafe_function(th->onEnded, batch, napi_tsfn_nonblocking) != napi_ok) delete batch;
    }
  }
  return nullptr;
}

// ---- the JS interface ---------------------------------------------------------------------------------------------

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, nullptr, "wsgate native pump: " #call " failed"); \
      return nullptr;                                                       \
    }                                                                       \
  } while (0)

double numberAt(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  double d = 0;
  if (napi_get_element(env, arr, i, &v) == napi_ok) napi_get_value_double(env, v, &d);
  return d;
}

// start(threads, onEnded(Float64Array of [id, closeCode, initiator, reason, bytesC2B, bytesB2C, msgsC2B, msgsB2C]…),
//       spliceMinBytes = 0 (off): frames with at least this much payload left are spliced)
napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc >= 3) {
    int64_t minBytes = 0;
    if (napi_get_value_int64(env, argv[2], &minBytes) == napi_ok && minBytes > 0) spliceMinBytes = size_t(minBytes);
  }
  if (!threads.empty()) {
    napi_throw_error(env, nullptr, "wsgate native pump: already started");
    return nullptr;
  }
  int32_t count = 1;
  CHECK(napi_get_value_int32(env, argv[0], &count));
  if (count < 1 || count > 64) count = 1;
  for (int i = 0; i < count; i++) {
    Thread* th = new Thread();
    th->index = i;
    for (auto& c : th->counters) c.store(0);
    th->readBuffer = static_cast<uint8_t*>(malloc(READ_BUFFER_BYTES));
    if (spliceMinBytes > 0) {
      if (pipe2(th->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        napi_throw_error(env, nullptr, "wsgate native pump: pipe2 failed");
        return nullptr;
      }
      fcntl(th->pipe[1], F_SETPIPE_SZ, PIPE_BYTES);
    }
    th->epfd = epoll_create1(EPOLL_CLOEXEC);
    th->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    epoll_ctl(th->epfd, EPOLL_CTL_ADD, th->wakefd, &ev);
    napi_value name;
    CHECK(napi_create_string_utf8(env, "wsgate-native-ended", NAPI_AUTO_LENGTH, &name));
    CHECK(napi_create_threadsafe_function(env, argv[1], nullptr, name, 0, 1, nullptr, nullptr, nullptr, callEnded,
                                          &th->onEnded));
    // The thread-safe function must not keep the event loop alive on its own; live tunnels do not either.
    napi_unref_threadsafe_function(env, th->onEnded);
    pthread_create(&th->thread, nullptr, threadMain, th);
    pthread_setname_np(th->thread, "wsgate-pump");
    threads.push_back(th);
  }
  return nullptr;
}

// add(clientFd, backendFd, limits: number[12] (c2b then b2c: msgs/s, burst, bytes/s, max message bytes,
//     max frames per message, control frames/s; 0 = unlimited), rsv1Allowed, earlyFromClient, earlyFromBackend)
// → tunnel id. The descriptors are duplicated: the caller closes (destroys) its sockets right after.
napi_value Add(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (threads.empty()) {
    napi_throw_error(env, nullptr, "wsgate native pump: not started");
    return nullptr;
  }
  int32_t fds[2];
  CHECK(napi_get_value_int32(env, argv[0], &fds[0]));
  CHECK(napi_get_value_int32(env, argv[1], &fds[1]));
  Tunnel* t = new Tunnel();
  Thread* th = threads[nextThread.fetch_add(1) % threads.size()];
  t->thread = th;
  t->id = double(nextId.fetch_add(1));
  bool rsv1 = false;
  CHECK(napi_get_value_bool(env, argv[3], &rsv1));
  t->rsv1Allowed = rsv1;
  for (int i = 0; i < 2; i++) {
    t->sides[i].tunnel = t;
    t->sides[i].index = i;
    t->sides[i].fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    Direction& d = t->dirs[i];
    d.fromClient = i == 0;
    d.src = i;
    d.dst = 1 - i;
    double* L = &d.limits.messagesPerSecond;
    for (uint32_t k = 0; k < 6; k++) L[k] = numberAt(env, argv[2], i * 6 + k);
    bool isBuffer = false;
    napi_is_buffer(env, argv[4 + i], &isBuffer);
    if (isBuffer) {
      void* data;
      size_t len;
      CHECK(napi_get_buffer_info(env, argv[4 + i], &data, &len));
      t->early[i].assign(static_cast<char*>(data), len);
    }
  }
  if (t->sides[0].fd < 0 || t->sides[1].fd < 0) {
    for (auto& s : t->sides)
      if (s.fd >= 0) close(s.fd);
    delete t;
    napi_throw_error(env, nullptr, "wsgate native pump: dup failed");
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(th->mutex);
    th->inbox.push_back(t);
  }
  uint64_t one = 1;
  if (write(th->wakefd, &one, 8) < 0) {
  }
  napi_value id;
  CHECK(napi_create_double(env, t->id, &id));
  return id;
}

// counters() → Float64Array of C_COUNT slots, summed over threads (see Counter).
napi_value Counters(napi_env env, napi_callback_info) {
  napi_value ab, arr;
  void* raw;
  CHECK(napi_create_arraybuffer(env, C_COUNT * sizeof(double), &raw, &ab));
  double* out = static_cast<double*>(raw);
  for (int k = 0; k < C_COUNT; k++) out[k] = 0;
  for (Thread* th : threads)
    for (int k = 0; k < C_COUNT; k++) out[k] += th->counters[k].load(std::memory_order_relaxed);
  CHECK(napi_create_typedarray(env, napi_float64_array, C_COUNT, ab, 0, &arr));
  return arr;
}

// closeAll(code): every live tunnel gets `code` toward the client and 1001 toward the backend (drain, reload).
napi_value CloseAll(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t code = 1001;
  CHECK(napi_get_value_int32(env, argv[0], &code));
  for (Thread* th : threads) {
    {
      std::lock_guard<std::mutex> lock(th->mutex);
      th->drainCodes.push_back(code);
    }
    uint64_t one = 1;
    if (write(th->wakefd, &one, 8) < 0) {
    }
  }
  return nullptr;
}

// setRoutes([{ prefix, host, port }]): publishes a new routing table for the native accept path (immutable; the
// threads read it per handshake, a reload swaps it whole).
napi_value SetRoutes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint32_t n = 0;
  CHECK(napi_get_array_length(env, argv[0], &n));
  auto table = std::make_shared<RouteTable>();
  for (uint32_t i = 0; i < n; i++) {
    napi_value item, v;
    CHECK(napi_get_element(env, argv[0], i, &item));
    char prefix[1024], host[64];
    size_t len;
    CHECK(napi_get_named_property(env, item, "prefix", &v));
    CHECK(napi_get_value_string_utf8(env, v, prefix, sizeof prefix, &len));
    CHECK(napi_get_named_property(env, item, "host", &v));
    CHECK(napi_get_value_string_utf8(env, v, host, sizeof host, &len));
    int32_t port = 0;
    CHECK(napi_get_named_property(env, item, "port", &v));
    CHECK(napi_get_value_int32(env, v, &port));
    Route r;
    r.prefix = prefix;
    r.backend = sockaddr_in{};
    r.backend.sin_family = AF_INET;
    r.backend.sin_port = htons(uint16_t(port));
    if (inet_pton(AF_INET, host, &r.backend.sin_addr) != 1) {
      napi_throw_error(env, nullptr, "wsgate native pump: backend host must be an IPv4 address");
      return nullptr;
    }
    table->push_back(r);
  }
  std::atomic_store(&routes, std::shared_ptr<const RouteTable>(table));
  return nullptr;
}

// decide(id, thread, status, port, request: Buffer, accept: string): the JS side's answer to a head (see Listen).
napi_value Decide(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  double id = 0;
  int32_t thread = 0, status = 0, port = 0;
  CHECK(napi_get_value_double(env, argv[0], &id));
  CHECK(napi_get_value_int32(env, argv[1], &thread));
  CHECK(napi_get_value_int32(env, argv[2], &status));
  CHECK(napi_get_value_int32(env, argv[3], &port));
  if (thread < 0 || size_t(thread) >= threads.size()) return nullptr;
  Decision d{uint64_t(id), status, port, {}, {}};
  if (status == 0) {
    void* data;
    size_t len;
    CHECK(napi_get_buffer_info(env, argv[4], &data, &len));
    d.request.assign(static_cast<char*>(data), len);
    char accept[64];
    CHECK(napi_get_value_string_utf8(env, argv[5], accept, sizeof accept, &len));
    d.accept.assign(accept, len);
  }
  Thread* th = threads[size_t(thread)];
  {
    std::lock_guard<std::mutex> lock(th->mutex);
    th->decisions.push_back(std::move(d));
  }
  uint64_t one = 1;
  if (write(th->wakefd, &one, 8) < 0) {
  }
  return nullptr;
}

// listen(port, limits: number[12], decide?) → port: every thread accepts on its own SO_REUSEPORT socket on 127.0.0.1:port
// (0: the first picks one) and runs the native accept + upgrade path; natively accepted tunnels get `limits`.
// With `decide(records: Float64Array, heads: Buffer)`, the checks, routing and the backend request are JS's: each
// complete head goes to it ([id, thread, client IPv4, offset, length] per head), and it answers with decide().
napi_value Listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  napi_valuetype decideType = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &decideType);
  if (decideType == napi_function) {
    jsDecides = true;
    for (Thread* th : threads) {
      napi_value name;
      CHECK(napi_create_string_utf8(env, "wsgate-native-heads", NAPI_AUTO_LENGTH, &name));
      CHECK(napi_create_threadsafe_function(env, argv[2], nullptr, name, 0, 1, nullptr, nullptr, nullptr, callHeads,
                                            &th->onHeads));
      napi_unref_threadsafe_function(env, th->onHeads);
    }
  }
  int32_t port = 0;
  CHECK(napi_get_value_int32(env, argv[0], &port));
  for (int i = 0; i < 2; i++) {
    double* L = &nativeLimits[i].messagesPerSecond;
    for (uint32_t k = 0; k < 6; k++) L[k] = numberAt(env, argv[1], i * 6 + k);
  }
  for (Thread* th : threads) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4096) != 0) {
      close(fd);
      napi_throw_error(env, nullptr, "wsgate native pump: cannot listen");
      return nullptr;
    }
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    th->listenFd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &th->listenFd;
    epoll_ctl(th->epfd, EPOLL_CTL_ADD, fd, &ev);
  }
  napi_value out;
  CHECK(napi_create_int32(env, port, &out));
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", nullptr, Start, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"add", nullptr, Add, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"counters", nullptr, Counters, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"closeAll", nullptr, CloseAll, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"listen", nullptr, Listen, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setRoutes", nullptr, SetRoutes, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"decide", nullptr, Decide, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value reasons;
  napi_create_array_with_length(env, REASON_COUNT, &reasons);
  for (int i = 0; i < REASON_COUNT; i++) {
    std::string s = i < R_VIOLATION_BASE ? REASONS[i] : std::string("violation:") + VIOLATION_KIND[i - R_VIOLATION_BASE];
    napi_value v;
    napi_create_string_utf8(env, s.c_str(), NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, reasons, i, v);
  }
  napi_set_named_property(env, exports, "reasons", reasons);
  napi_value slots;
  napi_create_int32(env, C_COUNT, &slots);
  napi_set_named_property(env, exports, "counterSlots", slots);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
