// The ZeroMQ DEALER client of the bridge, single-threaded: whoever owns an FClient calls
// every method from one thread (FClientWorker runs it on a worker thread for the engine).
//
// Behaviour, following python_bridge/client.py and the zguide:
//  * Connect() says hello and checks the protocol version; a mismatch is refused for good
//    (no retries), anything else unanswered is retried on a fresh socket ("Lazy Pirate").
//  * Latest wins: SetPose() replaces the pending pose; at most one render is in flight, and
//    the newest pending pose is sent as soon as the previous one is answered. A frame whose
//    id is not the one in flight (late, after a resend or reconnect) is dropped.
//  * Unchanged poses are not sent again: a pose within PoseEpsilonMetres / PoseEpsilonDegrees
//    of the last one requested (with the same intrinsics, size and options) is skipped, so a
//    camera at rest leaves the server idle.
//  * Frames are checked against the welcome: a frame larger than the server's limits or of
//    another size than requested is refused (an error event), never handed to the engine.
//  * Heartbeats: when the client has sent nothing for heartbeat_ms (from welcome) Pump()
//    pings, whether or not the last ping was answered, so the server never expires a live
//    session (docs/protocol.md, "Sessions"); after three heartbeats without a word from the
//    server it reconnects with the same session, so scenes survive a network blip. If the server restarted (the scene is unknown), the client
//    uploads the scene's views again and carries on.
#pragma once

#include "WorldFMCore/Expected.h"
#include "WorldFMCore/Export.h"
#include "WorldFMCore/Protocol.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace WorldFM
{
struct FClientConfig
{
	std::string Endpoint = "tcp://127.0.0.1:5555";
	std::string ClientName = "worldfm-unreal";
	/** Hello, ping, close and non-final uploads wait this long for their reply. */
	int RequestTimeoutMs = 3000;
	/** Connect() tries this many fresh sockets before giving up. */
	int ConnectAttempts = 3;
	/** The final upload waits this long for the server to build the scene. */
	int BuildTimeoutMs = 300000;
	/** A render unanswered for this long is presumed lost and the newest pose is resent. */
	int RenderTimeoutMs = 10000;
	/** First delay between reconnection attempts; doubles up to ReconnectBackoffMaxMs. */
	int ReconnectBackoffMs = 200;
	int ReconnectBackoffMaxMs = 3000;
	/**
	 * CurveZMQ encryption (a server bound beyond loopback requires it): the server's
	 * public key as 40 Z85 characters (the public-key line of server.key written by
	 * `worldfm serve --make-keys DIR`). Empty: plain TCP. The client key pair is
	 * generated per client unless both are given.
	 */
	std::string CurveServerKey;
	std::string CurvePublicKey;
	std::string CurveSecretKey;
	/** The protocol version announced in hello; change it only to test the server's refusal. */
	int AnnouncedVersion = ProtocolVersion;
	/**
	 * A pose closer than this to the last one requested (camera position in metres, rotation
	 * angle in degrees) is the same view and is not rendered again: sensor-level jitter of a
	 * camera at rest must not keep the server busy.
	 */
	double PoseEpsilonMetres = 1e-4;
	double PoseEpsilonDegrees = 1e-2;
};

enum class EConnectionState
{
	Disconnected,  // not connected yet, or reconnecting after a lost server
	Connected,     // handshake done
	Refused,       // the server refused us (protocol version): no automatic retries
};

/** A generated frame as the engine consumes it. */
struct FFrame
{
	uint64_t RequestId = 0;
	int Width = 0;
	int Height = 0;
	bool Jpeg = false;
	std::vector<uint8_t> Pixels;  // raw: RGB8 rows top to bottom (Height * Width * 3); jpeg: the file bytes
	FMat4 CameraToWorld{};         // the pose this frame answers (the server's echo)
	FMat3 K{};
	double ClientTimestamp = 0.0;  // the t_client of the request, echoed
	double LatencyMs = 0.0;        // send -> receive, measured here
	int Reference = -1;
	std::string Mode;
	std::vector<std::pair<std::string, double>> TimingsMs;
};

/** Things worth telling the user about, reported through the event sink. */
struct FClientEvent
{
	enum class EKind
	{
		Connected,
		Disconnected,
		Refused,
		SceneReady,
		Error,
	};
	EKind Kind = EKind::Error;
	std::string Message;
	std::string Code;  // the server's error code, when there is one
};

struct FClientStats
{
	uint64_t RendersSent = 0;
	uint64_t FramesReceived = 0;
	uint64_t LateFramesDropped = 0;
	uint64_t Superseded = 0;
	uint64_t RenderErrors = 0;
	uint64_t Reconnects = 0;
	uint64_t SceneReopens = 0;
	uint64_t UnchangedPosesSkipped = 0;  // SetPose calls that matched the last pose requested
	uint64_t FramesRefused = 0;          // frames whose size broke the welcome's limits or the request
	double LastRoundTripMs = 0.0;        // latest ping round trip
};

/**
 * True when B asks for the same view as A: camera positions within EpsilonMetres, rotations
 * within EpsilonDegrees of each other (the angle of R_A^T R_B), and the same intrinsics (to
 * 1e-9 relative), size, steps, seed and encoding.
 */
WORLDFM_CORE_API bool IsSameView(const FRenderRequest& A, const FRenderRequest& B, double EpsilonMetres,
                                 double EpsilonDegrees);

class WORLDFM_CORE_API FClient
{
public:
	explicit FClient(FClientConfig InConfig);
	~FClient();
	FClient(const FClient&) = delete;
	FClient& operator=(const FClient&) = delete;

	/** Open the socket and handshake. Fails with Code "version_mismatch" when refused. */
	FStatus Connect();
	EConnectionState State() const;
	const FWelcome& Welcome() const;
	const std::string& Session() const;

	/**
	 * Upload posed views (in batches of the server's max_views_per_message) and wait for
	 * scene_ready. The scene becomes the one SetPose() renders; the views are kept so the
	 * scene can be uploaded again after a server restart.
	 */
	TExpected<FSceneInfo> OpenScene(const std::string& Name, std::shared_ptr<const std::vector<FViewUpload>> Views);
	/** Close the current scene on the server and forget it. */
	FStatus CloseScene();
	const std::string& SceneId() const;

	/** Round trip of a ping in milliseconds. */
	TExpected<double> Ping();

	/**
	 * The newest pose to render (latest wins); sent by Pump() when nothing is in flight.
	 * Skipped when IsSameView() as the last pose requested for this scene.
	 */
	void SetPose(const FRenderRequest& Request);

	/**
	 * Do the client's work for up to TimeoutMs: send the pending pose, receive replies,
	 * heartbeat, reconnect. Returns true when a new frame arrived; it is swapped into Out
	 * (Out's old buffers are reused for the next frame, so steady state does not allocate).
	 */
	bool Pump(int TimeoutMs, FFrame& Out);

	/**
	 * While *Cancel is true, blocking waits (handshake, uploads, builds) give up within
	 * ~50 ms with Code "cancelled", so a worker thread can be stopped promptly. nullptr: none.
	 */
	void SetCancelFlag(const std::atomic<bool>* Cancel);

	/** Called on the owning thread for connection changes, scene builds and errors. */
	void SetEventSink(std::function<void(const FClientEvent&)> Sink);
	const FClientStats& Stats() const;

private:
	struct FImpl;
	std::unique_ptr<FImpl> Impl;
};
}  // namespace WorldFM
