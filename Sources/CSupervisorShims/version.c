/* The release both binaries report with --version: the repository's VERSION
   file (a test keeps them equal). In C so that scripts/package.sh --version
   can build another release by rewriting this one file: an incremental build
   then recompiles it and relinks, nothing else. */
#include "CSupervisorShims.h"

const char *csup_supervisor_version(void) { return "0.14.0"; }
