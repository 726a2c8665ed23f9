// The one error type of the code base: Error (a code plus a message naming what
// was wrong), Status (ok or an Error) and Result<T> (a value or an Error).
// Codes drive policy: kUnavailable means retry with backoff, kInvalidArgument
// means reject that input and carry on. Modelled on absl::Status / StatusOr.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace frugal {

enum class ErrorCode {
  kInvalidArgument,    // malformed or out-of-contract input: reject it
  kOutOfRange,         // a value or index outside its declared bounds
  kDataLoss,           // corrupt or truncated bytes (checksum, short read)
  kNotFound,           // a file, key or client that does not exist
  kAlreadyExists,      // a duplicate of something unique
  kFailedPrecondition, // the system is not in the state the call needs (stale round)
  kResourceExhausted,  // a hard limit was hit (frame size, connections)
  kUnauthenticated,    // identity missing or not trusted
  kPermissionDenied,   // identity known but not allowed
  kUnavailable,        // transient: retry with backoff
  kDeadlineExceeded,   // a timeout
  kInternal,           // a bug or an unexpected library failure
};

std::string_view ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: <message>"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Error WithContext(std::string_view context) const;

 private:
  ErrorCode code_;
  std::string message_;
};

inline Error InvalidArgumentError(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
inline Error OutOfRangeError(std::string m) { return {ErrorCode::kOutOfRange, std::move(m)}; }
inline Error DataLossError(std::string m) { return {ErrorCode::kDataLoss, std::move(m)}; }
inline Error NotFoundError(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
inline Error FailedPreconditionError(std::string m) { return {ErrorCode::kFailedPrecondition, std::move(m)}; }
inline Error ResourceExhaustedError(std::string m) { return {ErrorCode::kResourceExhausted, std::move(m)}; }
inline Error UnavailableError(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
inline Error InternalError(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }

// Ok, or an Error. Cheap to move; an ok Status holds nothing.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return !error_.has_value(); }
  const Error& error() const {
    assert(!ok());
    return *error_;
  }
  std::string ToString() const { return ok() ? "OK" : error_->ToString(); }

 private:
  std::optional<Error> error_;
};

inline Status OkStatus() { return Status(); }

// A value of type T, or the Error that prevented it.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(status.error()) { assert(!status.ok()); }  // NOLINT

  bool ok() const { return v_.index() == 0; }
  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  Status status() const { return ok() ? Status() : Status(error()); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace frugal

#define FRUGAL_CONCAT_INNER_(a, b) a##b
#define FRUGAL_CONCAT_(a, b) FRUGAL_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function if it is an error.
#define FRUGAL_RETURN_IF_ERROR(expr)                       \
  do {                                                     \
    ::frugal::Status frugal_status_ = (expr);              \
    if (!frugal_status_.ok()) return frugal_status_.error(); \
  } while (0)

// `lhs = value of expr`, or returns its Error from the enclosing function.
#define FRUGAL_ASSIGN_OR_RETURN(lhs, expr) \
  FRUGAL_ASSIGN_OR_RETURN_IMPL_(FRUGAL_CONCAT_(frugal_result_, __LINE__), lhs, expr)
#define FRUGAL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.error();                  \
  lhs = std::move(tmp).value()
