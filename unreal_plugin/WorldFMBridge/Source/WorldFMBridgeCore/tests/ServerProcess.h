// Starts the real Python bridge servers (tests/unreal_plugin/live_server.py) as a child
// process for the live tests, and stops or kills it. POSIX only, like the CI that runs it.
//
// Starting Python and importing the pipeline takes seconds, tens of seconds on a loaded
// machine, so a test binary starts one process serving every configuration it needs, and
// waits for it by readiness (its READY line, or its exit), not by a fixed budget.
#pragma once

#include "TestPaths.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <arpa/inet.h>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
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

/**
 * A hang guard, not a budget: how long a wait for the server may take before the test
 * gives up ($WORLDFM_TEST_PATIENCE_S, default 600 s). Waits end as soon as what they wait
 * for happens; this only stops a test that would otherwise never end.
 */
inline std::chrono::seconds Patience()
{
	const char* FromEnv = std::getenv("WORLDFM_TEST_PATIENCE_S");
	const long Seconds = FromEnv && *FromEnv ? std::strtol(FromEnv, nullptr, 10) : 600;
	return std::chrono::seconds(Seconds > 0 ? Seconds : 600);
}

struct FServerAddress
{
	std::string Endpoint;   // "tcp://127.0.0.1:PORT"
	std::string PublicKey;  // Z85 CurveZMQ key of an encrypted server; empty otherwise
};

class FServerProcess
{
public:
	/**
	 * Start live_server.py with Args (e.g. {"--bind", Endpoint}, {"--expiring-timeout-s", "1.5"},
	 * {"--curve-dir", Dir}) and wait until it prints READY.
	 */
	explicit FServerProcess(const std::vector<std::string>& Args = {})
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
			std::vector<const char*> Argv = {Python.c_str(), Script.c_str(), "--heartbeat-ms", "200"};
			for (const std::string& Arg : Args)
			{
				Argv.push_back(Arg.c_str());
			}
			Argv.push_back(nullptr);
			execvp(Python.c_str(), const_cast<char* const*>(Argv.data()));
			std::fprintf(stderr, "cannot run %s: %s (set WORLDFM_PYTHON)\n", Python.c_str(), std::strerror(errno));
			_exit(127);
		}
		close(Pipe[1]);
		Output = Pipe[0];
		const auto Started = std::chrono::steady_clock::now();
		const bool Ready = ReadUntilReady();
		const double Seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - Started).count();
		REQUIRE_MESSAGE(Ready, "the Python server did not print READY (it exited, or " << Patience().count()
		                           << " s passed); python: " << Python
		                           << " (set WORLDFM_PYTHON to the project's interpreter)");
		MESSAGE("live_server.py ready after " << Seconds << " s");
	}

	~FServerProcess() { Stop(SIGTERM); }

	FServerProcess(const FServerProcess&) = delete;
	FServerProcess& operator=(const FServerProcess&) = delete;

	/** The server called Name ("main", "expiring", "curve"; see live_server.py). */
	const FServerAddress& Server(const std::string& Name = "main") const
	{
		const auto Found = Servers.find(Name);
		REQUIRE_MESSAGE(Found != Servers.end(), "live_server.py serves no '" << Name << "' server with these arguments");
		return Found->second;
	}

	/** SIGTERM (graceful) or SIGKILL (a crash), then reap the process. */
	void Stop(int Signal)
	{
		if (Pid <= 0)
		{
			return;
		}
		kill(Pid, Signal);
		const auto Deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
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

private:
	/** Collect the SERVER lines until READY; false when the child exits first (or never says it). */
	bool ReadUntilReady()
	{
		const auto Deadline = std::chrono::steady_clock::now() + Patience();
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
				return false;  // the child exited
			}
			if (C != '\n')
			{
				Line += C;
				continue;
			}
			if (Line == "READY")
			{
				return !Servers.empty();
			}
			std::istringstream Words(Line);
			std::string Tag, Name;
			FServerAddress Address;
			if (Words >> Tag >> Name >> Address.Endpoint && Tag == "SERVER")
			{
				Words >> Address.PublicKey;
				Servers[Name] = Address;
			}
			Line.clear();
		}
		return false;
	}

	pid_t Pid = -1;
	int Output = -1;
	std::map<std::string, FServerAddress> Servers;
};
}  // namespace WorldFMTest
