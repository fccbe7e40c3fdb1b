// Registers the "WorldFM Preview" tab (Window > Level Editor > WorldFM Preview).
#include "Framework/Application/SlateApplication.h"
#include "Framework/Docking/TabManager.h"
#include "Modules/ModuleManager.h"
#include "SWorldFMPreview.h"
#include "Widgets/Docking/SDockTab.h"
#include "WorkspaceMenuStructure.h"
#include "WorkspaceMenuStructureModule.h"

#define LOCTEXT_NAMESPACE "WorldFMBridgeEditor"

namespace
{
const FName PreviewTabName(TEXT("WorldFMPreview"));
}

class FWorldFMBridgeEditorModule final : public IModuleInterface
{
public:
	virtual void StartupModule() override
	{
		FGlobalTabmanager::Get()
			->RegisterNomadTabSpawner(PreviewTabName, FOnSpawnTab::CreateStatic(&FWorldFMBridgeEditorModule::SpawnPreviewTab))
			.SetDisplayName(LOCTEXT("PreviewTabTitle", "WorldFM Preview"))
			.SetTooltipText(LOCTEXT("PreviewTabTooltip", "Generated views of the level from the active viewport's camera"))
			.SetGroup(WorkspaceMenu::GetMenuStructure().GetLevelEditorCategory());
	}

	virtual void ShutdownModule() override
	{
		if (FSlateApplication::IsInitialized())
		{
			FGlobalTabmanager::Get()->UnregisterNomadTabSpawner(PreviewTabName);
		}
	}

private:
	static TSharedRef<SDockTab> SpawnPreviewTab(const FSpawnTabArgs& Args)
	{
		return SNew(SDockTab).TabRole(ETabRole::NomadTab)[SNew(SWorldFMPreview)];
	}
};

IMPLEMENT_MODULE(FWorldFMBridgeEditorModule, WorldFMBridgeEditor);

#undef LOCTEXT_NAMESPACE
