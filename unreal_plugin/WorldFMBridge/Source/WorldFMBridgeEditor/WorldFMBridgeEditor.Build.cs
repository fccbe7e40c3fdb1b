// Editor module: the dockable "WorldFM Preview" tab that follows the active level viewport.
using UnrealBuildTool;

public class WorldFMBridgeEditor : ModuleRules
{
	public WorldFMBridgeEditor(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;

		PrivateDependencyModuleNames.AddRange(new string[]
		{
			"Core",
			"CoreUObject",
			"Engine",
			"InputCore",
			"Slate",
			"SlateCore",
			"UnrealEd",
			"LevelEditor",
			"WorkspaceMenuStructure",
			"WorldFMBridge",
		});
	}
}
