#pragma once

#include "Logging/LogMacros.h"

WORLDFMBRIDGE_API DECLARE_LOG_CATEGORY_EXTERN(LogWorldFMBridge, Log, All);
