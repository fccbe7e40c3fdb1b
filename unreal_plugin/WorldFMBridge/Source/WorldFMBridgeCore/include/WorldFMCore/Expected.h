// A value or the reason there is none. The core's public API never throws: the Unreal
// modules that call it are compiled without exceptions, so every failure comes back as a
// message saying what was wrong and what to do.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace WorldFM
{
/**
 * Failure with a human-readable reason; empty Message means success. Code is a
 * machine-readable tag where one exists (the server's error codes, "version_mismatch",
 * "timeout"), empty otherwise.
 */
struct FStatus
{
	std::string Message;
	std::string Code;

	static FStatus Ok() { return {}; }
	static FStatus Error(std::string InMessage, std::string InCode = {})
	{
		return FStatus{std::move(InMessage), std::move(InCode)};
	}
	bool IsOk() const { return Message.empty(); }
	explicit operator bool() const { return IsOk(); }
};

/** Either a T or an error message. */
template <typename T>
class TExpected
{
public:
	TExpected(T InValue) : Value(std::move(InValue)) {}
	TExpected(FStatus InError) : Error(std::move(InError)) {}

	bool IsOk() const { return Value.has_value(); }
	explicit operator bool() const { return IsOk(); }
	const T& Get() const { return *Value; }
	T& Get() { return *Value; }
	const T& operator*() const { return *Value; }
	const T* operator->() const { return &*Value; }
	const std::string& ErrorMessage() const { return Error.Message; }
	const FStatus& Status() const { return Error; }

private:
	std::optional<T> Value;
	FStatus Error;
};
}  // namespace WorldFM
