// Preemption signals. SIGTERM and SIGUSR1 (what SLURM sends before a time limit with --signal)
// and a first SIGINT only set a flag; the trainer checks it at step and eval-batch boundaries,
// combines it across ranks so every rank stops at the same step, writes a checkpoint and exits
// with kExitPreempted (75). A second SIGINT exits at once (130), for a user who means it.
#pragma once

namespace ftune::train {

void InstallPreemptionHandlers();
bool StopRequested();                 // this process received a stop signal
int StopSignal();                     // which one (0 = none)
void RequestStopForTest(int signal);  // as if `signal` had arrived
void ClearStopRequest();

}  // namespace ftune::train
