// nsbox-runc's native front end (build/Release/nsbox-runc, and prebuilds/linux-<arch>/ in
// the package): the commands callers make for every container (`state ID`, `kill ID
// [SIGNAL]`, `start ID` of a container without start hooks, `delete [--force] ID` of one
// whose removal is only kill + cgroup + state files, `--version`) without starting Node;
// everything else, and every case this does not recognise or that fails before it changed
// anything, is handed to the Node runtime (dist/nsbox-runc.cjs, found relative to this
// program: both build/Release/ and prebuilds/<platform>/ are two levels under the package)
// with the same arguments, which then gives its own answer and error text.
//
// It reads what `nsbox-runc create` (lib/oci/runc.ts, writeFront) leaves beside the sandbox's
// state in --root: <id>.runc, five lines:
//   <holderPid> <holderStart> <hasProgram 0|1> <hasStartHooks 0|1> <nativeDelete 0|1>
//   <freezer file ("" when none): cgroup.freeze (v2) or freezer.state (v1)>
//   <the state's fixed part as JSON members: "bundle":...,"rootfs":...,"created":...,...>
//   <the sandbox's cgroup directories (one per hierarchy), tab-separated>
//   <"made" or "nsbox", then tab-separated: the directories delete removes, in order>
// nativeDelete is 1 only when Sandbox.destroy() of the attached sandbox does no more than
// this does (lib/runner/sandbox.ts destroy + removeOpenedCgroup): a cgroup, no image
// container, no network handed to the holder, no poststop hook. "made": the directories
// nsbox made for an exact cgroupsPath (one with a child directory is left, as removeMade
// does); "nsbox": its own directories (a child directory there hands the delete to Node).
// The holder is the same process when /proc/<pid>/stat's start time is the recorded one, as
// the library checks it (lib/owner.ts processStart); signals go through a pidfd opened first.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

const char* gRoot = "/run/nsbox-runc";
const char* gLog = nullptr;
bool gJson = false;
char** gArgv;

[[noreturn]] void Delegate() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) { fprintf(stderr, "nsbox-runc: cannot find itself\n"); _exit(1); }
  self[n] = 0;
  std::string dir(self, strrchr(self, '/') - self);
  std::string js = dir + "/../../dist/nsbox-runc.cjs";
  const char* env = getenv("NSBOX_RUNC_JS");
  if (env && *env) js = env;
  std::vector<char*> argv;
  const char* node = getenv("NSBOX_NODE");
  argv.push_back(const_cast<char*>(node && *node ? node : "node"));
  argv.push_back(const_cast<char*>(js.c_str()));
  for (char** a = gArgv + 1; *a; a++) argv.push_back(*a);
  argv.push_back(nullptr);
  // Node reads and parses a CA bundle named here at every start (~30 ms of CPU here), for TLS
  // connections the runtime never makes; hooks and containers get only the env their config
  // gives (conmon runs the runtime without it anyway)
  unsetenv("NODE_EXTRA_CA_CERTS");
  execvp(argv[0], argv.data());
  fprintf(stderr, "nsbox-runc: cannot run %s: %s (set NSBOX_NODE to Node's path)\n", argv[0], strerror(errno));
  _exit(1);
}

bool ReadFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  ssize_t n;
  out->clear();
  while ((n = read(fd, buf, sizeof buf)) > 0) out->append(buf, n);
  close(fd);
  return n == 0;
}

// /proc/<pid>/stat's start time (field 22), or -1 when the process is gone or a zombie
long long ProcessStart(long pid) {
  std::string s;
  if (!ReadFile("/proc/" + std::to_string(pid) + "/stat", &s)) return -1;
  size_t p = s.rfind(')');
  if (p == std::string::npos || p + 2 >= s.size()) return -1;
  const char* c = s.c_str() + p + 2;
  if (*c == 'Z' || *c == 'X') return -1;
  for (int field = 3; field < 22; field++) {
    c = strchr(c, ' ');
    if (!c) return -1;
    c++;
  }
  return atoll(c);
}

struct Front {
  long pid = 0;
  long long start = 0;
  int program = 0, startHooks = 0, nativeDelete = 0;
  std::string freezer, fixed;
  std::vector<std::string> dirs, remove;
  bool made = false;
};

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b < line.size()) {
    size_t e = line.find('\t', b);
    if (e == std::string::npos) e = line.size();
    if (e > b) out.push_back(line.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

bool ValidId(const char* id) {
  size_t n = strlen(id);
  if (n == 0 || n > 64 || id[0] == '.' || id[0] == '-' || id[0] == '_') return false;
  for (const char* c = id; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-')) return false;
  }
  return true;
}

// the container's front file, or Delegate() when it has none (or its state is gone)
Front Load(const char* id) {
  if (!ValidId(id)) Delegate();
  std::string base = std::string(gRoot) + "/" + id;
  struct stat st;
  if (stat((base + ".json").c_str(), &st) != 0) Delegate();
  std::string s;
  if (!ReadFile(base + ".runc", &s)) Delegate();
  Front f;
  size_t l1 = s.find('\n'), l2 = l1 == std::string::npos ? l1 : s.find('\n', l1 + 1);
  if (l2 == std::string::npos) Delegate();
  int n = sscanf(s.c_str(), "%ld %lld %d %d %d", &f.pid, &f.start, &f.program, &f.startHooks, &f.nativeDelete);
  if (n < 4 || f.pid <= 0) Delegate();
  if (n < 5) f.nativeDelete = 0;
  f.freezer = s.substr(l1 + 1, l2 - l1 - 1);
  size_t l3 = s.find('\n', l2 + 1);
  f.fixed = s.substr(l2 + 1, l3 == std::string::npos ? std::string::npos : l3 - l2 - 1);
  while (!f.fixed.empty() && f.fixed.back() == '\n') f.fixed.pop_back();
  size_t l4 = l3 == std::string::npos ? l3 : s.find('\n', l3 + 1);
  size_t l5 = l4 == std::string::npos ? l4 : s.find('\n', l4 + 1);
  if (l5 == std::string::npos) { f.nativeDelete = 0; return f; }
  f.dirs = SplitTabs(s.substr(l3 + 1, l4 - l3 - 1));
  f.remove = SplitTabs(s.substr(l4 + 1, l5 - l4 - 1));
  if (f.remove.empty() || (f.remove[0] != "made" && f.remove[0] != "nsbox") || f.dirs.empty()) { f.nativeDelete = 0; return f; }
  f.made = f.remove[0] == "made";
  f.remove.erase(f.remove.begin());
  return f;
}

// created / running / paused / stopped, as lib/oci/runc.ts runcStatus
const char* Status(const char* id, const Front& f) {
  if (ProcessStart(f.pid) != f.start) return "stopped";
  if (f.program) {
    std::string rec;
    if (!ReadFile(std::string(gRoot) + "/" + id + ".exit", &rec) || rec.size() < 4 || rec.compare(0, 3, "run") != 0) return "created";
  }
  if (!f.freezer.empty()) {
    std::string v;
    if (ReadFile(f.freezer, &v)) {
      while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
      bool v2 = f.freezer.size() >= 13 && f.freezer.compare(f.freezer.size() - 13, 13, "cgroup.freeze") == 0;
      if (v2 ? v == "1" : v != "THAWED") return "paused";
    }
  }
  return "running";
}

int CmdState(const char* id) {
  Front f = Load(id);
  const char* st = Status(id, f);
  printf("{\"ociVersion\":\"1.0.2\",\"id\":\"%s\",\"pid\":%ld,\"status\":\"%s\",%s}\n", id, strcmp(st, "stopped") == 0 ? 0 : f.pid, st, f.fixed.c_str());
  return 0;
}

int ParseSignal(const char* s) {
  if (*s >= '0' && *s <= '9') {
    char* end;
    long n = strtol(s, &end, 10);
    return *end || n <= 0 || n > 64 ? -1 : (int)n;
  }
  if (strncasecmp(s, "SIG", 3) == 0) s += 3;
  static const struct { const char* name; int sig; } kSigs[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL}, {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},
    {"BUS", SIGBUS}, {"FPE", SIGFPE}, {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}, {"SYS", SIGSYS},
  };
  for (const auto& k : kSigs) if (strcasecmp(s, k.name) == 0) return k.sig;
  return -1;
}

int CmdKill(const char* id, const char* sigName) {
  int sig = ParseSignal(sigName ? sigName : "SIGTERM");
  if (sig < 0) Delegate();
  Front f = Load(id);
  if (strcmp(Status(id, f), "stopped") == 0) Delegate();  // Node says why
  int pfd = (int)syscall(SYS_pidfd_open, f.pid, 0);
  if (pfd < 0) Delegate();
  // opened, then checked: the pidfd names the recorded holder, never a recycled pid
  if (ProcessStart(f.pid) != f.start || syscall(SYS_pidfd_send_signal, pfd, sig, nullptr, 0) != 0) { close(pfd); Delegate(); }
  close(pfd);
  return 0;
}

void LogError(const std::string& msg) {
  if (gLog) {
    FILE* l = fopen(gLog, "ae");
    if (l) {
      char t[64];
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      struct tm tm;
      gmtime_r(&ts.tv_sec, &tm);
      size_t len = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
      snprintf(t + len, sizeof t - len, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
      std::string m;
      for (char c : msg) {
        if (c == '"' || c == '\\') { m += '\\'; m += c; } else if ((unsigned char)c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); m += e; } else m += c;
      }
      if (gJson) fprintf(l, "{\"level\":\"error\",\"msg\":\"%s\",\"time\":\"%s\"}\n", m.c_str(), t);
      else fprintf(l, "%s error: %s\n", t, msg.c_str());
      fclose(l);
    }
  }
  fprintf(stderr, "%s\n", msg.c_str());
}

// the report of a failed start: nsbox's ChildMsg (addon/src/msg.h): kind, pid, errno,
// step[32], syscall[32], path[256], message[256]
std::string Field(const std::string& b, size_t off, size_t len) {
  std::string s = b.substr(off, len);
  size_t z = s.find('\0');
  return z == std::string::npos ? s : s.substr(0, z);
}

int CmdStart(const char* id) {
  Front f = Load(id);
  if (f.startHooks || !f.program || strcmp(Status(id, f), "created") != 0) Delegate();
  std::string sock = std::string(gRoot) + "/" + id + ".sock";
  struct sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (sock.size() >= sizeof a.sun_path) Delegate();
  memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (struct sockaddr*)&a, sizeof a) != 0) { if (c >= 0) close(c); Delegate(); }
  // one byte starts the program; the connection is then its error pipe (EOF once it exec'd)
  if (write(c, "s", 1) != 1) { close(c); Delegate(); }
  std::string got;
  char buf[1024];
  ssize_t n;
  while ((n = read(c, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) if (n > 0) got.append(buf, n);
  close(c);
  unlink(sock.c_str());
  if (got.empty()) return 0;
  const size_t kMsg = 4 + 4 + 4 + 32 + 32 + 256 + 256;
  if (got.size() < kMsg) { LogError("a short report from the sandbox's pid 1"); return 1; }
  int err;
  memcpy(&err, got.data() + 8, 4);
  std::string step = Field(got, 12, 32), call = Field(got, 44, 32), path = Field(got, 76, 256);
  const char* name = strerrorname_np(err);
  LogError(call + " failed at step '" + step + "'" + (path.empty() ? "" : " (" + path + ")") + ": " + (name ? name : std::to_string(err)));
  return 1;
}

bool WriteFile(const std::string& path, const char* v) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, v, strlen(v)) == (ssize_t)strlen(v);
  close(fd);
  return ok;
}

void SleepMs(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

long long NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

// the pids in the sandbox's cgroup, every hierarchy; false when one cannot be read (and is there)
bool CgroupPids(const Front& f, std::vector<long>* pids) {
  pids->clear();
  for (const auto& d : f.dirs) {
    std::string s;
    if (!ReadFile(d + "/cgroup.procs", &s)) {
      if (errno == ENOENT) continue;
      return false;
    }
    for (const char* c = s.c_str(); *c;) {
      char* end;
      long p = strtol(c, &end, 10);
      if (end == c) break;
      if (p > 0) pids->push_back(p);
      c = end;
      while (*c == '\n') c++;
    }
  }
  return true;
}

bool HasChildDir(const std::string& d) {
  int fd = open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  long n;
  bool found = false;
  while (!found && (n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct Dirent { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; };
      auto* e = reinterpret_cast<Dirent*>(buf + off);
      if (e->type == 4 /* DT_DIR */ && strcmp(e->name, ".") != 0 && strcmp(e->name, "..") != 0) { found = true; break; }
      off += e->reclen;
    }
  }
  close(fd);
  return found;
}

// every task of the cgroup SIGKILLed and gone, as lib/cgroup/drivers.ts kill does it (v2
// cgroup.kill; else freeze, signal every task listed, thaw, until empty); false after 10 s
bool KillCgroup(const Front& f) {
  bool v2 = f.freezer.size() >= 13 && f.freezer.compare(f.freezer.size() - 13, 13, "cgroup.freeze") == 0;
  std::string killFile = f.dirs[0] + "/cgroup.kill";
  struct stat st;
  bool viaKill = v2 && stat(killFile.c_str(), &st) == 0;
  if (viaKill) {
    if (!f.freezer.empty()) WriteFile(f.freezer, "0");
    if (!WriteFile(killFile, "1") && errno != ENOENT) return false;
  }
  long long end = NowMs() + 10000;
  std::vector<long> pids;
  for (int i = 0;; i++) {
    if (!CgroupPids(f, &pids)) return false;
    if (pids.empty()) return true;
    if (NowMs() > end) return false;
    if (!viaKill) {
      bool frozen = false;
      if (!f.freezer.empty() && WriteFile(f.freezer, v2 ? "1" : "FROZEN")) {
        for (int w = 0; w < 1000; w++) {
          std::string v;
          if (!ReadFile(v2 ? f.dirs[0] + "/cgroup.events" : f.freezer, &v)) break;
          if (v2 ? v.find("frozen 1") != std::string::npos : v.compare(0, 6, "FROZEN") == 0) { frozen = true; break; }
          if (v2 && v.find("populated 0") != std::string::npos) break;
          SleepMs(1);
        }
      }
      if (!CgroupPids(f, &pids)) return false;
      for (long p : pids) if (p != getpid()) kill((pid_t)p, SIGKILL);
      if (frozen || !f.freezer.empty()) WriteFile(f.freezer, v2 ? "0" : "THAWED");
    }
    SleepMs(i < 10 ? 1 : 10);
  }
}

// rmdir, again while the kernel still counts a task that just died (EBUSY), for up to 2 s
bool RmdirRetry(const std::string& d) {
  for (int i = 0;; i++) {
    if (rmdir(d.c_str()) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY || i > 200) return false;
    SleepMs(10);
  }
}

int CmdDelete(const char* id, bool force) {
  Front f = Load(id);
  if (!f.nativeDelete) Delegate();
  const char* st = Status(id, f);
  if (!force && (strcmp(st, "running") == 0 || strcmp(st, "paused") == 0)) Delegate();  // Node's error
  if (!f.made) for (const auto& d : f.remove) if (HasChildDir(d)) Delegate();
  // nothing is changed before this point; the kill is one Node would do again
  if (!KillCgroup(f)) Delegate();
  // the holder (pid 1) is out of the cgroup now; a zombie counts as gone
  for (long long end = NowMs() + 10000; ProcessStart(f.pid) == f.start;) {
    if (NowMs() > end) Delegate();
    SleepMs(1);
  }
  for (const auto& d : f.remove) {
    if (f.made && HasChildDir(d)) continue;
    if (!RmdirRetry(d)) {
      LogError("cannot remove the cgroup " + d + ": " + strerror(errno));
      return 1;
    }
  }
  std::string base = std::string(gRoot) + "/" + id;
  for (const char* ext : {".json", ".sock", ".exit", ".runc"}) unlink((base + ext).c_str());
  return 0;
}

// `--version`: the package's version from its package.json (two levels above this program)
int CmdVersion() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) Delegate();
  self[n] = 0;
  std::string pkg;
  if (!ReadFile(std::string(self, strrchr(self, '/') - self) + "/../../package.json", &pkg)) Delegate();
  size_t k = pkg.find("\"version\"");
  size_t q1 = k == std::string::npos ? k : pkg.find('"', pkg.find(':', k));
  size_t q2 = q1 == std::string::npos ? q1 : pkg.find('"', q1 + 1);
  if (q2 == std::string::npos) Delegate();
  printf("nsbox-runc version %s\nspec: 1.0.2\n", pkg.substr(q1 + 1, q2 - q1 - 1).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gArgv = argv;
  int i = 1;
  bool version = false;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char* a = argv[i];
    auto value = [&](const char* name) -> const char* {
      size_t n = strlen(name);
      if (strncmp(a, name, n) != 0) return nullptr;
      if (a[n] == '=') return a + n + 1;
      if (a[n] == 0 && i + 1 < argc) return argv[++i];
      return nullptr;
    };
    const char* v;
    if ((v = value("--root"))) { if (v[0] != '/') Delegate(); gRoot = v; }
    else if ((v = value("--log"))) gLog = v;
    else if ((v = value("--log-format"))) { if (strcmp(v, "json") == 0) gJson = true; else if (strcmp(v, "text") != 0) Delegate(); }
    else if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) version = true;
    else Delegate();
  }
  if (version) return CmdVersion();
  if (i >= argc) Delegate();
  const char* cmd = argv[i];
  int rest = argc - i - 1;
  char** r = argv + i + 1;
  if (strcmp(cmd, "delete") == 0 && rest >= 1) {
    bool force = false;
    int k = 0;
    for (; k < rest - 1; k++) {
      if (strcmp(r[k], "--force") == 0 || strcmp(r[k], "-f") == 0 || strcmp(r[k], "--force=true") == 0) force = true;
      else if (strcmp(r[k], "--force=false") != 0) Delegate();
    }
    if (r[k][0] == '-') Delegate();
    return CmdDelete(r[k], force);
  }
  for (int k = 0; k < rest; k++) if (r[k][0] == '-') Delegate();  // options of a command: Node's
  if (strcmp(cmd, "state") == 0 && rest == 1) return CmdState(r[0]);
  if (strcmp(cmd, "kill") == 0 && (rest == 1 || rest == 2)) return CmdKill(r[0], rest == 2 ? r[1] : nullptr);
  if (strcmp(cmd, "start") == 0 && rest == 1) return CmdStart(r[0]);
  Delegate();
}
