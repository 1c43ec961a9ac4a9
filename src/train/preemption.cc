#include "train/preemption.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace ftune::train {
namespace {
std::atomic<int> g_signal{0};
std::atomic<int> g_sigints{0};

void Handler(int sig) {
  if (sig == SIGINT && g_sigints.fetch_add(1) >= 1) {
    static const char kMsg[] = "\nftune: second interrupt, exiting without a checkpoint\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(130);
  }
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
}
}  // namespace

void InstallPreemptionHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = Handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &sa, nullptr);
}

bool StopRequested() { return g_signal.load() != 0; }
int StopSignal() { return g_signal.load(); }
void RequestStopForTest(int signal) { g_signal.store(signal); }
void ClearStopRequest() {
  g_signal.store(0);
  g_sigints.store(0);
}

}  // namespace ftune::train
