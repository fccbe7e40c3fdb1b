// Editor Preferences > Plugins > WorldFM Bridge (Client Keys): the client's CurveZMQ key pair
// for a server started with --authorized-keys. Per user and per project
// (Saved/Config/<Platform>/EditorPerProjectUserSettings.ini): never in DefaultGame.ini, source
// control or a packaged build. A packaged game passes its keys to ConnectTo() instead.
#pragma once

#include "CoreMinimal.h"
#include "Engine/DeveloperSettings.h"
#include "WorldFMBridgeUserSettings.generated.h"

UCLASS(Config = EditorPerProjectUserSettings, meta = (DisplayName = "WorldFM Bridge"))
class WORLDFMBRIDGE_API UWorldFMBridgeUserSettings : public UDeveloperSettings
{
	GENERATED_BODY()

public:
	virtual FName GetContainerName() const override { return TEXT("Editor"); }
	virtual FName GetCategoryName() const override { return TEXT("Plugins"); }

	/** Fixed client public key (Z85, 40 characters); empty = a fresh key pair per connection. */
	UPROPERTY(Config, EditAnywhere, Category = "Client Keys")
	FString ClientPublicKey;

	/** The matching secret key (Z85, 40 characters). Stays in this user's config only. */
	UPROPERTY(Config, EditAnywhere, Category = "Client Keys", meta = (PasswordField = true))
	FString ClientSecretKey;
};
