// Where the tests find the repository's shared files and the Python server.
// CMake passes the repository root; environment variables override both for CI.
#pragma once

#include <cstdlib>
#include <string>

namespace WorldFMTest
{
/** Repository root: $WORLDFM_REPO_ROOT, else the path CMake configured. */
inline std::string RepoRoot()
{
	const char* FromEnv = std::getenv("WORLDFM_REPO_ROOT");
	return FromEnv && *FromEnv ? FromEnv : WORLDFM_REPO_ROOT;
}

inline std::string CameraVectorsPath() { return RepoRoot() + "/tests/data/camera_vectors.json"; }

/** Python with the project installed: $WORLDFM_PYTHON, else python3 on PATH. */
inline std::string PythonExecutable()
{
	const char* FromEnv = std::getenv("WORLDFM_PYTHON");
	return FromEnv && *FromEnv ? FromEnv : "python3";
}
}  // namespace WorldFMTest
