// DistilBERT as a ModelFamily (family.h): Hugging Face's names for it, PEFT's adapter targets
// (ftune's own where PEFT has none), its checkpoint layouts, and its builders.
#pragma once

#include "model/family.h"

namespace ftune::model {

const ModelFamily& DistilBertFamily();

}  // namespace ftune::model
