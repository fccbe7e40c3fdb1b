// Runtime module: the engine subsystem that owns the connection, the view component, the
// level scene seeder, the frame texture and the project settings.
using UnrealBuildTool;

public class WorldFMBridge : ModuleRules
{
	public WorldFMBridge(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;

		PublicDependencyModuleNames.AddRange(new string[]
		{
			"Core",
			"CoreUObject",
			"Engine",
			"DeveloperSettings",
		});
		PrivateDependencyModuleNames.AddRange(new string[]
		{
			"WorldFMBridgeCore",
			"RenderCore",
			"RHI",
			"ImageWrapper",
		});
	}
}
