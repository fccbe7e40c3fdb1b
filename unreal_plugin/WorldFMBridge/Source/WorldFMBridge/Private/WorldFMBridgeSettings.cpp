#include "WorldFMBridgeSettings.h"

UWorldFMBridgeSettings::UWorldFMBridgeSettings()
	: ServerEndpoint(TEXT("tcp://127.0.0.1:5555"))
	, SeedPitchesDeg({-25.0f, 0.0f, 25.0f})
{
}
