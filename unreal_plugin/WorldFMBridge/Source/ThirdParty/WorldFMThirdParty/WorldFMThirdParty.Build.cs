// The client core's third-party libraries, prebuilt per platform by build_thirdparty.sh (Linux,
// Mac) and build_thirdparty.ps1 (Win64) beside this file (docs/unreal.md, section 2):
//   include/   zmq.h, zmq.hpp, zmq_addon.hpp (libzmq 4.3.4, cppzmq 4.9.0), msgpack.hpp + msgpack/ (msgpack-cxx 4.1.3),
//              nlohmann/ (nlohmann-json 3.11.2, header-only: camera-path files)
//   lib/Win64/libzmq.lib                           static, /MD, built with ZMQ_STATIC
//   lib/Linux/x86_64-unknown-linux-gnu/libzmq.a    static, PIC, hidden visibility, the engine's clang and libc++
//   lib/Mac/libzmq.a                               static, hidden visibility, universal (arm64 + x86_64)
// Only WorldFMBridgeCore depends on this module, so libzmq is linked into that module alone and,
// hidden, exports nothing from it. Licences: LICENSES/ (libzmq LGPL-3.0 with its static-linking
// exception, cppzmq MIT, msgpack-cxx BSL-1.0, nlohmann-json MIT); ship that folder with the plugin.
using System.IO;
using UnrealBuildTool;

public class WorldFMThirdParty : ModuleRules
{
	public WorldFMThirdParty(ReadOnlyTargetRules Target) : base(Target)
	{
		Type = ModuleType.External;

		string IncludeDir = Path.Combine(ModuleDirectory, "include");
		string LibDir = Path.Combine(ModuleDirectory, "lib");
		PublicSystemIncludePaths.Add(IncludeDir);
		PublicDefinitions.Add("ZMQ_STATIC=1");

		string Library;
		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			Library = Path.Combine(LibDir, "Win64", "libzmq.lib");
			PublicSystemLibraries.AddRange(new string[] { "ws2_32.lib", "iphlpapi.lib", "advapi32.lib" });
		}
		else if (Target.Platform == UnrealTargetPlatform.Linux)
		{
			Library = Path.Combine(LibDir, "Linux", Target.Architecture.LinuxName, "libzmq.a");
		}
		else if (Target.Platform == UnrealTargetPlatform.Mac)
		{
			Library = Path.Combine(LibDir, "Mac", "libzmq.a");
		}
		else
		{
			throw new BuildException("WorldFMBridge supports Win64, Linux and Mac; {0} has no libzmq build here.", Target.Platform);
		}

		if (!File.Exists(Library) || !File.Exists(Path.Combine(IncludeDir, "zmq.hpp")) || !File.Exists(Path.Combine(IncludeDir, "msgpack.hpp")) ||
		    !File.Exists(Path.Combine(IncludeDir, "nlohmann", "json.hpp")))
		{
			throw new BuildException(
				"WorldFMBridge: third-party files missing. Expected {0} and the headers zmq.h, zmq.hpp, msgpack.hpp, nlohmann/json.hpp under {1}. " +
				"Build them with Source/ThirdParty/WorldFMThirdParty/build_thirdparty.sh (Linux, Mac) or build_thirdparty.ps1 (Win64); " +
				"see docs/unreal.md.", Library, IncludeDir);
		}
		PublicAdditionalLibraries.Add(Library);
	}
}
