// The DistContext shared by every test in ftune_distributed_test. MPI can be initialised only once per
// process, so mpi_test_main.cc owns it; tests read it here. The binary runs both as a plain
// process (world size 1) and under mpirun, and every test must hold in both.
#pragma once

#include "distributed/dist_context.h"

namespace ftune::dist::testing {

const DistContext& TestContext();

}  // namespace ftune::dist::testing
