// Starts the real Python bridge server (tests/unreal_plugin/live_server.py) as a child
// process for the live tests, and stops or kills it. POSIX only, like the CI that runs it.
#pragma once

#include "TestPaths.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace WorldFMTest
{
/** "tcp://127.0.0.1:PORT" for a port that was free a moment ago (nobody listens there). */
inline std::string FreeEndpoint()
{
	const int Socket = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(Socket >= 0);
	sockaddr_in Address{};
	Address.sin_family = AF_INET;
	Address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t Length = sizeof(Address);
	REQUIRE(bind(Socket, reinterpret_cast<sockaddr*>(&Address), sizeof(Address)) == 0);
	REQUIRE(getsockname(Socket, reinterpret_cast<sockaddr*>(&Address), &Length) == 0);
	close(Socket);
	return "tcp://127.0.0.1:" + std::to_string(ntohs(Address.sin_port));
}

class FServerProcess
{
public:
	/**
	 * Start a server bound to Bind ("tcp://127.0.0.1:*" picks a free port) and wait for
	 * READY. ExtraArgs go to live_server.py (e.g. {"--curve-dir", Dir} for an encrypted
	 * server, {"--client-timeout-s", "1"} for quickly expiring sessions).
	 */
	explicit FServerProcess(const std::string& Bind = "tcp://127.0.0.1:*", const std::vector<std::string>& ExtraArgs = {})
	{
		int Pipe[2];
		REQUIRE(pipe(Pipe) == 0);
		const std::string Python = PythonExecutable();
		const std::string Script = RepoRoot() + "/tests/unreal_plugin/live_server.py";
		Pid = fork();
		REQUIRE(Pid >= 0);
		if (Pid == 0)
		{
			dup2(Pipe[1], STDOUT_FILENO);
			close(Pipe[0]);
			close(Pipe[1]);
			std::vector<const char*> Args = {Python.c_str(), Script.c_str(), "--bind", Bind.c_str(), "--heartbeat-ms", "200"};
			for (const std::string& Arg : ExtraArgs)
			{
				Args.push_back(Arg.c_str());
			}
			Args.push_back(nullptr);
			execvp(Python.c_str(), const_cast<char* const*>(Args.data()));
			std::fprintf(stderr, "cannot run %s: %s (set WORLDFM_PYTHON)\n", Python.c_str(), std::strerror(errno));
			_exit(127);
		}
		close(Pipe[1]);
		Output = Pipe[0];
		Endpoint = ReadReady(std::chrono::seconds(120));
		if (const size_t Space = Endpoint.find(' '); Space != std::string::npos)
		{
			ServerPublicKey = Endpoint.substr(Space + 1);
			Endpoint.resize(Space);
		}
		REQUIRE_MESSAGE(!Endpoint.empty(), "the Python server did not print READY; python: " << Python
		                                       << " (set WORLDFM_PYTHON to the project's interpreter)");
	}

	~FServerProcess() { Stop(SIGTERM); }

	/** SIGTERM (graceful) or SIGKILL (a crash), then reap the process. */
	void Stop(int Signal)
	{
		if (Pid <= 0)
		{
			return;
		}
		kill(Pid, Signal);
		const auto Deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
		int Status = 0;
		while (waitpid(Pid, &Status, WNOHANG) == 0)
		{
			if (std::chrono::steady_clock::now() > Deadline)
			{
				kill(Pid, SIGKILL);
				waitpid(Pid, &Status, 0);
				break;
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
		}
		Pid = -1;
		close(Output);
	}

	/** "tcp://127.0.0.1:PORT" */
	std::string Endpoint;
	/** Z85 CurveZMQ public key of an encrypted server; empty otherwise. */
	std::string ServerPublicKey;

private:
	std::string ReadReady(std::chrono::seconds Timeout)
	{
		const auto Deadline = std::chrono::steady_clock::now() + Timeout;
		std::string Line;
		while (std::chrono::steady_clock::now() < Deadline)
		{
			pollfd Item{Output, POLLIN, 0};
			if (poll(&Item, 1, 200) <= 0)
			{
				continue;
			}
			char C;
			if (read(Output, &C, 1) != 1)
			{
				return {};  // the child exited
			}
			if (C != '\n')
			{
				Line += C;
				continue;
			}
			if (Line.rfind("READY ", 0) == 0)
			{
				return Line.substr(6);
			}
			Line.clear();
		}
		return {};
	}

	pid_t Pid = -1;
	int Output = -1;
};
}  // namespace WorldFMTest
