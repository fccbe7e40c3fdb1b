// The engine-independent client core (plain C++17, also built and tested with CMake by
// CMakeLists.txt beside this file). UnrealBuildTool compiles src/ and Module/; tests/ holds
// a .ubtignore and is CMake-only.
using System.IO;
using UnrealBuildTool;

public class WorldFMBridgeCore : ModuleRules
{
	public WorldFMBridgeCore(ReadOnlyTargetRules Target) : base(Target)
	{
		// The sources include no engine headers (except Module/), so no shared PCH.
		PCHUsage = PCHUsageMode.NoPCHs;
		// Compile each file alone: no engine macros may leak into the third-party headers.
		bUseUnity = false;
		// cppzmq, msgpack-cxx and nlohmann-json report errors by throwing; the core catches everything and
		// its public API (include/) never throws, so dependents keep exceptions off.
		bEnableExceptions = true;
		// Third-party headers trip warnings Unreal promotes to errors.
		ShadowVariableWarningLevel = WarningLevel.Off;
		UndefinedIdentifierWarningLevel = WarningLevel.Off;

		PublicIncludePaths.Add(Path.Combine(ModuleDirectory, "include"));
		// msgpack-cxx header-only without Boost, the configuration the CMake build tests.
		PrivateDefinitions.Add("MSGPACK_NO_BOOST=1");
		PrivateDefinitions.Add("MSGPACK_DEFAULT_API_VERSION=3");

		PublicDependencyModuleNames.Add("Core");
		PrivateDependencyModuleNames.Add("WorldFMThirdParty");
	}
}
