#include "Modules/ModuleManager.h"
#include "WorldFMBridgeLog.h"

DEFINE_LOG_CATEGORY(LogWorldFMBridge);

IMPLEMENT_MODULE(FDefaultModuleImpl, WorldFMBridge);
