#include "WorldFMCore/Client.h"

// zmq.h and msgpack include <winsock2.h>, whose windows.h min/max macros would break std::min.
#if defined(_WIN32) && !defined(NOMINMAX)
#define NOMINMAX
#endif
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstring>
#include <iterator>
#include <optional>
#include <random>
#include <thread>

namespace WorldFM
{
namespace
{
using FClock = std::chrono::steady_clock;
using FMilliseconds = std::chrono::milliseconds;

constexpr int64_t MaxReplyBytes = int64_t(512) << 20;  // refuse absurd replies before allocating them
constexpr int SilentHeartbeatsBeforeReconnect = 3;
constexpr int CancelCheckMs = 50;  // blocking waits look at the cancel flag this often

double WallClockSeconds()
{
	return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double MillisecondsSince(FClock::time_point Start)
{
	return std::chrono::duration<double, std::milli>(FClock::now() - Start).count();
}

std::string RandomSession()
{
	std::random_device Device;
	std::mt19937_64 Generator((uint64_t(Device()) << 32) ^ Device());
	static const char Hex[] = "0123456789abcdef";
	std::string Session(32, '0');
	for (char& C : Session)
	{
		C = Hex[Generator() & 0xF];
	}
	return Session;
}

/**
 * Whole milliseconds to Deadline, rounded up: rounded down, the last fraction of a millisecond
 * before a deadline reads 0 and every poll loop waiting for it spins (an idle worker pumping
 * 2 ms slices burnt a quarter of a core that way).
 */
int RemainingMs(FClock::time_point Deadline)
{
	const auto Left = std::chrono::ceil<FMilliseconds>(Deadline - FClock::now()).count();
	return static_cast<int>(std::clamp<int64_t>(Left, 0, std::numeric_limits<int>::max()));
}

double MaxAbsDifference(const double* A, const double* B, size_t Count, double Scale = 1.0)
{
	double Worst = 0.0;
	for (size_t I = 0; I < Count; ++I)
	{
		Worst = std::max(Worst, std::abs(A[I] - B[I]) / Scale);
	}
	return Worst;
}
}  // namespace

struct FClient::FImpl
{
	explicit FImpl(FClientConfig InConfig) : Config(std::move(InConfig)), Session(RandomSession()) {}

	FClientConfig Config;
	zmq::context_t Context{1};
	std::unique_ptr<zmq::socket_t> Socket;
	std::vector<zmq::message_t> Parts;  // receive buffer, reused
	EConnectionState ConnectionState = EConnectionState::Disconnected;
	FWelcome WelcomeInfo;
	std::string Session;
	uint64_t NextId = 1;
	std::function<void(const FClientEvent&)> Sink;
	FClientStats Statistics;
	const std::atomic<bool>* Cancel = nullptr;

	// The scene SetPose renders, and what it takes to upload it again.
	std::string Scene;
	std::string SceneName;
	std::shared_ptr<const std::vector<FViewUpload>> SceneViews;

	// Latest wins: one render in flight, one pending (the newest pose not yet sent).
	std::optional<FRenderRequest> PendingPose;
	std::optional<FRenderRequest> LastRequested;  // the newest pose SetPose accepted (unchanged ones are skipped)
	uint64_t InFlightId = 0;
	FRenderRequest InFlightPose;
	FClock::time_point InFlightSent;
	bool FrameReady = false;
	FFrame Ready;

	// Recovery decided while dispatching, carried out by Pump (never inside a request).
	bool NeedsHello = false;
	bool NeedsReopen = false;

	// Heartbeats and reconnection.
	FClock::time_point LastHeard = FClock::now();
	FClock::time_point LastSent = FClock::now();
	uint64_t PingId = 0;
	FClock::time_point PingSent;
	FClock::time_point NextReconnect = FClock::now();
	int BackoffMs = 0;

	void Emit(FClientEvent::EKind Kind, std::string Message, std::string Code = {})
	{
		if (Sink)
		{
			Sink(FClientEvent{Kind, std::move(Message), std::move(Code)});
		}
	}

	int LivenessMs() const
	{
		return std::max(SilentHeartbeatsBeforeReconnect * WelcomeInfo.HeartbeatMs, Config.RequestTimeoutMs);
	}

	// ------------------------------------------------------------ socket

	/** The client's CurveZMQ key pair: configured, or generated once per client. */
	void EnsureCurveKeys()
	{
		if (!Config.CurvePublicKey.empty() && !Config.CurveSecretKey.empty())
		{
			return;
		}
		char Public[41] = {}, Secret[41] = {};
		if (zmq_curve_keypair(Public, Secret) != 0)
		{
			throw zmq::error_t();  // libzmq built without CURVE support
		}
		Config.CurvePublicKey = Public;
		Config.CurveSecretKey = Secret;
	}

	/** A fresh DEALER socket. Replies to the old one are lost, so the render in flight is resent. */
	void OpenSocket()
	{
		if (InFlightId != 0)
		{
			if (!PendingPose)
			{
				PendingPose = InFlightPose;
			}
			InFlightId = 0;  // its reply, if it ever comes, is dropped as late
		}
		PingId = 0;
		Socket = std::make_unique<zmq::socket_t>(Context, zmq::socket_type::dealer);
		if (!Config.CurveServerKey.empty())
		{
			EnsureCurveKeys();
			Socket->set(zmq::sockopt::curve_serverkey, Config.CurveServerKey);
			Socket->set(zmq::sockopt::curve_publickey, Config.CurvePublicKey);
			Socket->set(zmq::sockopt::curve_secretkey, Config.CurveSecretKey);
		}
		Socket->set(zmq::sockopt::linger, 0);
		// Queue nothing for a server that is not there: stale poses must not arrive late.
		Socket->set(zmq::sockopt::immediate, 1);
		Socket->set(zmq::sockopt::maxmsgsize, MaxReplyBytes);
		Socket->connect(Config.Endpoint);
		Parts.clear();
	}

	bool Cancelled() const { return Cancel && Cancel->load(std::memory_order_relaxed); }

	/** Send all parts, waiting up to WaitMs for the server to be reachable. */
	bool Send(const FEncodedMessage& Message, int WaitMs)
	{
		const FClock::time_point Deadline = FClock::now() + FMilliseconds(WaitMs);
		zmq::pollitem_t Item{Socket->handle(), 0, ZMQ_POLLOUT, 0};
		while (zmq::poll(&Item, 1, FMilliseconds(std::min(RemainingMs(Deadline), CancelCheckMs))) == 0)
		{
			if (RemainingMs(Deadline) == 0 || Cancelled())
			{
				return false;
			}
		}
		const bool More = !Message.Blobs.empty();
		if (!Socket->send(zmq::buffer(Message.Header),
		                  More ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::dontwait))
		{
			return false;
		}
		for (size_t I = 0; I < Message.Blobs.size(); ++I)
		{
			const bool Last = I + 1 == Message.Blobs.size();
			// The first part went out, so libzmq accepts the rest of the multipart atomically.
			Socket->send(zmq::const_buffer(Message.Blobs[I].first, Message.Blobs[I].second),
			             Last ? zmq::send_flags::none : zmq::send_flags::sndmore);
		}
		LastSent = FClock::now();
		return true;
	}

	/** Receive and decode one reply within WaitMs; std::nullopt when nothing (usable) came. */
	std::optional<FReply> Receive(int WaitMs)
	{
		zmq::pollitem_t Item{Socket->handle(), 0, ZMQ_POLLIN, 0};
		if (zmq::poll(&Item, 1, FMilliseconds(WaitMs)) == 0)
		{
			return std::nullopt;
		}
		Parts.clear();
		if (!zmq::recv_multipart(*Socket, std::back_inserter(Parts), zmq::recv_flags::dontwait))
		{
			return std::nullopt;
		}
		LastHeard = FClock::now();
		std::vector<FWireFrame> Frames;
		Frames.reserve(Parts.size());
		for (const zmq::message_t& Part : Parts)
		{
			Frames.push_back(FWireFrame{Part.data(), Part.size()});
		}
		TExpected<FReply> Reply = DecodeReply(Frames.data(), Frames.size());
		if (!Reply)
		{
			if (Reply.Status().Code == "version_mismatch")
			{
				Refuse(Reply.ErrorMessage());
			}
			else
			{
				Emit(FClientEvent::EKind::Error, Reply.ErrorMessage(), Reply.Status().Code);
			}
			return std::nullopt;
		}
		return std::move(Reply.Get());
	}

	/** Send a request and wait for the reply with its id; other replies are dispatched meanwhile. */
	TExpected<FReply> Request(const FEncodedMessage& Message, uint64_t Id, int TimeoutMs)
	{
		const FClock::time_point Deadline = FClock::now() + FMilliseconds(TimeoutMs);
		if (!Send(Message, TimeoutMs))
		{
			return FStatus::Error("could not reach " + Config.Endpoint + " within " + std::to_string(TimeoutMs) +
			                          " ms; is `worldfm serve` running there?",
			                      "timeout");
		}
		while (ConnectionState != EConnectionState::Refused)
		{
			if (Cancelled())
			{
				return FStatus::Error("cancelled: the client is shutting down", "cancelled");
			}
			const int Left = RemainingMs(Deadline);
			std::optional<FReply> Reply = Receive(std::min(Left, CancelCheckMs));
			if (Reply && Reply->Id == Id)
			{
				if (Reply->Type == EReplyType::Error)
				{
					return FStatus::Error(Reply->ErrorMessage, Reply->ErrorCode);
				}
				return std::move(*Reply);
			}
			if (Reply)
			{
				Dispatch(*Reply);
			}
			// A long wait (a scene build) must not let the server expire the session.
			PingIfDue();
			if (Left == 0)
			{
				return FStatus::Error("no reply from " + Config.Endpoint + " within " + std::to_string(TimeoutMs) + " ms",
				                      "timeout");
			}
		}
		return FStatus::Error("the server refused this client: protocol version mismatch", "version_mismatch");
	}

	void Refuse(const std::string& Why)
	{
		ConnectionState = EConnectionState::Refused;
		Emit(FClientEvent::EKind::Refused, Why, "version_mismatch");
	}

	// ------------------------------------------------------------ handshake

	FStatus Handshake()
	{
		const uint64_t Id = NextId++;
		TExpected<FReply> Reply =
			Request(EncodeHello(Id, Config.ClientName, Session, Config.AnnouncedVersion), Id, Config.RequestTimeoutMs);
		if (!Reply)
		{
			if (Reply.Status().Code == "version_mismatch")
			{
				if (ConnectionState != EConnectionState::Refused)
				{
					Refuse(Reply.ErrorMessage());
				}
				return FStatus::Error("the server refused the handshake: " + Reply.ErrorMessage() +
				                          " Install matching versions of the plugin and the worldfm server.",
				                      "version_mismatch");
			}
			return Reply.Status();
		}
		if (Reply->Type != EReplyType::Welcome)
		{
			return FStatus::Error(std::string("hello was answered with ") + ToString(Reply->Type) + ", not welcome", "malformed");
		}
		if (Reply->Welcome.Protocol != ProtocolVersion)
		{
			const std::string Why = "the server speaks protocol v" + std::to_string(Reply->Welcome.Protocol) +
			                        "; this plugin speaks v" + std::to_string(ProtocolVersion);
			Refuse(Why);
			return FStatus::Error(Why, "version_mismatch");
		}
		WelcomeInfo = Reply->Welcome;
		ConnectionState = EConnectionState::Connected;
		NeedsHello = false;
		BackoffMs = 0;
		PingId = 0;
		LastHeard = FClock::now();
		Emit(FClientEvent::EKind::Connected, "connected to " + WelcomeInfo.Server + " (" + WelcomeInfo.ModelName + ") at " +
		                                         Config.Endpoint);
		return FStatus::Ok();
	}

	/** Lazy Pirate: drop the socket (and whatever it queued), open a fresh one, hello again. */
	void Reconnect()
	{
		if (ConnectionState == EConnectionState::Connected)
		{
			ConnectionState = EConnectionState::Disconnected;
			Emit(FClientEvent::EKind::Disconnected, "lost " + Config.Endpoint + "; reconnecting");
		}
		++Statistics.Reconnects;
		OpenSocket();
		if (!Handshake() && ConnectionState != EConnectionState::Refused)
		{
			BackoffMs = BackoffMs == 0 ? Config.ReconnectBackoffMs : std::min(2 * BackoffMs, Config.ReconnectBackoffMaxMs);
			NextReconnect = FClock::now() + FMilliseconds(BackoffMs);
		}
	}

	// ------------------------------------------------------------ scenes

	TExpected<FSceneInfo> Upload(const std::string& Name, const std::vector<FViewUpload>& Views)
	{
		if (Views.empty())
		{
			return FStatus::Error("a scene needs at least one view");
		}
		const size_t Batch = static_cast<size_t>(std::max(1, std::min(WelcomeInfo.MaxViewsPerMessage, 16)));
		std::string Uploading;  // empty until the server names the scene
		for (size_t First = 0; First < Views.size(); First += Batch)
		{
			const size_t Count = std::min(Batch, Views.size() - First);
			const bool Final = First + Count == Views.size();
			const uint64_t Id = NextId++;
			TExpected<FReply> Reply = Request(EncodeViews(Id, Uploading, Name, Views.data() + First, Count, Final), Id,
			                                  Final ? Config.BuildTimeoutMs : std::max(Config.RequestTimeoutMs, 30000));
			if (!Reply)
			{
				return FStatus::Error("uploading scene '" + Name + "' failed: " + Reply.ErrorMessage(), Reply.Status().Code);
			}
			const EReplyType Expected = Final ? EReplyType::SceneReady : EReplyType::ViewsAdded;
			if (Reply->Type != Expected)
			{
				return FStatus::Error(std::string("upload answered with ") + ToString(Reply->Type) + ", expected " +
				                          ToString(Expected),
				                      "malformed");
			}
			Uploading = Reply->Scene.Scene;
			if (Final)
			{
				return Reply->Scene;
			}
		}
		return FStatus::Error("unreachable: the last batch is final");
	}

	void Reopen()
	{
		NeedsReopen = false;
		if (!SceneViews)
		{
			return;
		}
		TExpected<FSceneInfo> Info = Upload(SceneName, *SceneViews);
		if (!Info && Info.Status().Code == "timeout")
		{
			// The server went away again: reconnect (with backoff) and upload once it is back.
			NeedsReopen = true;
			ConnectionState = EConnectionState::Disconnected;
			Emit(FClientEvent::EKind::Disconnected, "lost " + Config.Endpoint + " while re-uploading the scene; reconnecting");
			return;
		}
		if (!Info)
		{
			Scene.clear();  // nothing to render into until the user opens a scene again
			Emit(FClientEvent::EKind::Error, "the server lost scene '" + SceneName + "' and re-uploading it failed: " +
			                                     Info.ErrorMessage(), Info.Status().Code);
			return;
		}
		Scene = Info->Scene;
		++Statistics.SceneReopens;
		Emit(FClientEvent::EKind::SceneReady, "scene '" + SceneName + "' re-opened as " + Scene + " (the server had lost it)");
	}

	// ------------------------------------------------------------ asynchronous replies

	void Dispatch(FReply& Reply)
	{
		const uint64_t Id = Reply.Id.value_or(0);
		switch (Reply.Type)
		{
			case EReplyType::Frame:
				if (Id != 0 && Id == InFlightId)
				{
					const FStatus Size = CheckFrameSize(Reply.Frame.Width, Reply.Frame.Height, WelcomeInfo, InFlightPose.Size);
					if (Size)
					{
						Deliver(Reply);
					}
					else
					{
						InFlightId = 0;
						LastRequested.reset();  // the same pose may be asked for again
						++Statistics.FramesRefused;
						Emit(FClientEvent::EKind::Error, Size.Message, Size.Code);
					}
				}
				else
				{
					++Statistics.LateFramesDropped;
				}
				return;
			case EReplyType::Superseded:
				if (Id != 0 && Id == InFlightId)
				{
					InFlightId = 0;
					++Statistics.Superseded;
				}
				return;
			case EReplyType::Pong:
				if (Id != 0 && Id == PingId)
				{
					Statistics.LastRoundTripMs = MillisecondsSince(PingSent);
					PingId = 0;
				}
				return;
			case EReplyType::Error:
				if (Id != 0 && Id == InFlightId)
				{
					RenderFailed(Reply);
				}
				else if (Id == 0 || Id != PingId)
				{
					Emit(FClientEvent::EKind::Error, Reply.ErrorMessage, Reply.ErrorCode);
				}
				return;
			default:
				return;  // a late answer to a request that already gave up waiting
		}
	}

	void RenderFailed(const FReply& Reply)
	{
		InFlightId = 0;
		if (Reply.ErrorCode == "no_session" || Reply.ErrorCode == "unknown_scene" || Reply.ErrorCode == "shutting_down")
		{
			// The server restarted or expired us: say hello again, upload the scene again, resend.
			if (!PendingPose)
			{
				PendingPose = InFlightPose;
			}
			NeedsHello = NeedsHello || Reply.ErrorCode != "unknown_scene";
			NeedsReopen = Reply.ErrorCode != "shutting_down";
			return;
		}
		++Statistics.RenderErrors;
		LastRequested.reset();  // submitting the same pose again retries it
		Emit(FClientEvent::EKind::Error, "render failed: " + Reply.ErrorMessage, Reply.ErrorCode);
	}

	void Deliver(const FReply& Reply)
	{
		const FFrameHeader& Header = Reply.Frame;
		const FBlobView& Image = Reply.Blobs[0];
		Ready.RequestId = InFlightId;
		Ready.Width = Header.Width;
		Ready.Height = Header.Height;
		Ready.Jpeg = Header.Jpeg;
		Ready.Pixels.resize(Image.Size);
		std::memcpy(Ready.Pixels.data(), Image.Data, Image.Size);
		Ready.CameraToWorld = Header.CameraToWorld;
		Ready.K = Header.K;
		Ready.ClientTimestamp = Header.ClientTimestamp;
		Ready.LatencyMs = MillisecondsSince(InFlightSent);
		Ready.Reference = Header.Reference;
		Ready.Mode = Header.Mode;
		Ready.TimingsMs = Header.TimingsMs;
		FrameReady = true;
		InFlightId = 0;
		++Statistics.FramesReceived;
	}

	// ------------------------------------------------------------ pump

	void SendPendingPose()
	{
		if (InFlightId != 0 && MillisecondsSince(InFlightSent) > Config.RenderTimeoutMs)
		{
			if (!PendingPose)
			{
				PendingPose = InFlightPose;
			}
			InFlightId = 0;  // presumed lost; a late answer is dropped by id
		}
		if (InFlightId != 0 || !PendingPose || Scene.empty())
		{
			return;
		}
		const uint64_t Id = NextId++;
		PendingPose->ClientTimestamp = WallClockSeconds();
		if (Send(EncodeRender(Id, Scene, *PendingPose), 0))
		{
			InFlightId = Id;
			InFlightPose = *PendingPose;
			InFlightSent = FClock::now();
			PendingPose.reset();
			++Statistics.RendersSent;
		}
	}

	void Heartbeat()
	{
		const double Silent = MillisecondsSince(LastHeard);
		if (Silent > LivenessMs())
		{
			Reconnect();
			return;
		}
		PingIfDue();
	}

	/**
	 * Ping when this client has sent nothing for a heartbeat: the server expires sessions that
	 * send nothing for client_timeout_ms (docs/protocol.md, "Sessions"), so the cadence is
	 * kept whether or not the previous ping was answered yet. Only the newest ping's pong
	 * measures the round trip.
	 */
	void PingIfDue()
	{
		if (ConnectionState != EConnectionState::Connected || MillisecondsSince(LastSent) < WelcomeInfo.HeartbeatMs)
		{
			return;
		}
		const uint64_t Id = NextId++;
		if (Send(EncodePing(Id, WallClockSeconds()), 0))
		{
			PingId = Id;
			PingSent = FClock::now();
		}
	}
};

FClient::FClient(FClientConfig InConfig) : Impl(std::make_unique<FImpl>(std::move(InConfig))) {}

FClient::~FClient() = default;

FStatus FClient::Connect()
{
	FStatus Last;
	try
	{
		for (int Attempt = 0; Attempt < std::max(1, Impl->Config.ConnectAttempts); ++Attempt)
		{
			Impl->OpenSocket();
			Last = Impl->Handshake();
			if (Last || Impl->ConnectionState == EConnectionState::Refused)
			{
				return Last;
			}
		}
	}
	catch (const zmq::error_t& Error)
	{
		return FStatus::Error("cannot open a ZeroMQ socket to '" + Impl->Config.Endpoint + "': " + Error.what() +
		                          " (an endpoint looks like tcp://127.0.0.1:5555; a CurveZMQ key is 40 Z85 characters)",
		                      "transport");
	}
	return FStatus::Error("no answer from " + Impl->Config.Endpoint + " after " +
	                          std::to_string(std::max(1, Impl->Config.ConnectAttempts)) + " attempt(s): " + Last.Message +
	                          ". Start the server with `worldfm serve` (and check the address in Project Settings).",
	                      Last.Code);
}

EConnectionState FClient::State() const { return Impl->ConnectionState; }

const FWelcome& FClient::Welcome() const { return Impl->WelcomeInfo; }

const std::string& FClient::Session() const { return Impl->Session; }

const std::string& FClient::SceneId() const { return Impl->Scene; }

TExpected<FSceneInfo> FClient::OpenScene(const std::string& Name, std::shared_ptr<const std::vector<FViewUpload>> Views)
{
	if (Impl->ConnectionState != EConnectionState::Connected)
	{
		return FStatus::Error("connect to the server before opening a scene", "not_connected");
	}
	if (!Views)
	{
		return FStatus::Error("OpenScene needs views");
	}
	try
	{
		TExpected<FSceneInfo> Info = Impl->Upload(Name, *Views);
		if (Info)
		{
			Impl->Scene = Info->Scene;
			Impl->LastRequested.reset();  // a new scene renders even the pose of the old one
			Impl->SceneName = Name;
			Impl->SceneViews = std::move(Views);
			Impl->Emit(FClientEvent::EKind::SceneReady, "scene '" + Name + "' ready as " + Info->Scene);
		}
		return Info;
	}
	catch (const zmq::error_t& Error)
	{
		return FStatus::Error(std::string("transport error while uploading the scene: ") + Error.what(), "transport");
	}
}

FStatus FClient::CloseScene()
{
	if (Impl->Scene.empty())
	{
		return FStatus::Ok();
	}
	const std::string Scene = Impl->Scene;
	Impl->Scene.clear();
	Impl->SceneViews.reset();
	Impl->PendingPose.reset();
	Impl->LastRequested.reset();
	try
	{
		const uint64_t Id = Impl->NextId++;
		TExpected<FReply> Reply = Impl->Request(EncodeCloseScene(Id, Scene), Id, Impl->Config.RequestTimeoutMs);
		return Reply ? FStatus::Ok() : Reply.Status();
	}
	catch (const zmq::error_t& Error)
	{
		return FStatus::Error(std::string("transport error while closing the scene: ") + Error.what(), "transport");
	}
}

TExpected<double> FClient::Ping()
{
	if (!Impl->Socket)
	{
		return FStatus::Error("connect to the server before pinging it", "not_connected");
	}
	try
	{
		const auto Start = FClock::now();
		const uint64_t Id = Impl->NextId++;
		TExpected<FReply> Reply = Impl->Request(EncodePing(Id, WallClockSeconds()), Id, Impl->Config.RequestTimeoutMs);
		if (!Reply)
		{
			return Reply.Status();
		}
		Impl->Statistics.LastRoundTripMs = MillisecondsSince(Start);
		return Impl->Statistics.LastRoundTripMs;
	}
	catch (const zmq::error_t& Error)
	{
		return FStatus::Error(std::string("transport error while pinging: ") + Error.what(), "transport");
	}
}

void FClient::SetPose(const FRenderRequest& Request)
{
	FImpl& I = *Impl;
	if (I.LastRequested &&
	    IsSameView(*I.LastRequested, Request, I.Config.PoseEpsilonMetres, I.Config.PoseEpsilonDegrees))
	{
		++I.Statistics.UnchangedPosesSkipped;
		return;
	}
	I.PendingPose = Request;
	I.LastRequested = Request;
}

bool IsSameView(const FRenderRequest& A, const FRenderRequest& B, double EpsilonMetres, double EpsilonDegrees)
{
	if (A.Size != B.Size || A.Steps != B.Steps || A.Seed != B.Seed || A.Jpeg != B.Jpeg || A.K.has_value() != B.K.has_value())
	{
		return false;
	}
	if (A.K && MaxAbsDifference(A.K->data(), B.K->data(), 9, std::max(1.0, std::abs((*A.K)[0]))) > 1e-9)
	{
		return false;
	}
	const FMat4& P = A.CameraToWorld;
	const FMat4& Q = B.CameraToWorld;
	const double Moved = std::sqrt((P[3] - Q[3]) * (P[3] - Q[3]) + (P[7] - Q[7]) * (P[7] - Q[7]) +
	                               (P[11] - Q[11]) * (P[11] - Q[11]));
	// The angle of the relative rotation R_P^T R_Q: cos = (trace - 1) / 2.
	double Trace = 0.0;
	for (int Row = 0; Row < 3; ++Row)
	{
		for (int Col = 0; Col < 3; ++Col)
		{
			Trace += P[4 * Row + Col] * Q[4 * Row + Col];
		}
	}
	const double Turned = std::acos(std::clamp((Trace - 1.0) / 2.0, -1.0, 1.0)) * 180.0 / 3.14159265358979323846;
	return Moved <= EpsilonMetres && Turned <= EpsilonDegrees;
}

bool FClient::Pump(int TimeoutMs, FFrame& Out)
{
	FImpl& I = *Impl;
	const FClock::time_point Deadline = FClock::now() + FMilliseconds(std::max(0, TimeoutMs));
	try
	{
		while (true)
		{
			if (I.ConnectionState == EConnectionState::Refused || !I.Socket)
			{
				std::this_thread::sleep_until(Deadline);  // nothing to do until the user connects again
				return false;
			}
			if (I.NeedsHello)  // the server forgot our session: hello again on the same socket
			{
				I.NeedsHello = false;
				if (!I.Handshake() && I.ConnectionState != EConnectionState::Refused)
				{
					I.ConnectionState = EConnectionState::Disconnected;
					I.Emit(FClientEvent::EKind::Disconnected, "lost " + I.Config.Endpoint + "; reconnecting");
				}
				continue;
			}
			if (I.ConnectionState == EConnectionState::Disconnected)
			{
				if (FClock::now() >= I.NextReconnect)
				{
					I.Reconnect();
				}
				if (I.ConnectionState != EConnectionState::Connected)
				{
					std::this_thread::sleep_until(std::min(Deadline, I.NextReconnect));
					if (FClock::now() >= Deadline)
					{
						return false;
					}
					continue;
				}
			}
			if (I.NeedsReopen)
			{
				I.Reopen();
			}
			I.SendPendingPose();
			I.Heartbeat();
			if (I.ConnectionState != EConnectionState::Connected)
			{
				continue;
			}
			// Wake up in time for the next heartbeat even when the caller allows longer.
			const int Wait = std::min(RemainingMs(Deadline), std::max(1, I.WelcomeInfo.HeartbeatMs / 2));
			if (std::optional<FReply> Reply = I.Receive(Wait))
			{
				I.Dispatch(*Reply);
			}
			if (I.FrameReady)
			{
				std::swap(Out, I.Ready);
				I.FrameReady = false;
				return true;
			}
			if (FClock::now() >= Deadline)
			{
				return false;
			}
		}
	}
	catch (const zmq::error_t& Error)
	{
		I.Emit(FClientEvent::EKind::Error, std::string("transport error: ") + Error.what(), "transport");
		I.ConnectionState = EConnectionState::Disconnected;
		return false;
	}
}

void FClient::SetCancelFlag(const std::atomic<bool>* Cancel) { Impl->Cancel = Cancel; }

void FClient::SetEventSink(std::function<void(const FClientEvent&)> Sink) { Impl->Sink = std::move(Sink); }

const FClientStats& FClient::Stats() const { return Impl->Statistics; }
}  // namespace WorldFM
