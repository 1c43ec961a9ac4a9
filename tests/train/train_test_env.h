#pragma once
#include "distributed/dist_context.h"
namespace ftune::train::testing {
const dist::DistContext& Context();
}  // namespace ftune::train::testing
