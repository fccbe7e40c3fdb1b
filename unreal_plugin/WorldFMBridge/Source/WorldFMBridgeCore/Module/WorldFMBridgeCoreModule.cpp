// The only engine-facing file of the core: registers it as an Unreal module. The CMake
// build does not compile it.
#include "Modules/ModuleManager.h"

IMPLEMENT_MODULE(FDefaultModuleImpl, WorldFMBridgeCore);
