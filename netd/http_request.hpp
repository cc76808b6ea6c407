// The little HTTP that /metrics needs (metrics.listen): what a request asks for, read from
// the bytes received so far, and the whole answer to it. One request per connection, answered
// with "Connection: close"; no keep-alive, no body, nothing else parsed.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace angel {

enum class HttpVerdict {
    incomplete,          // the header has not ended yet: read more
    metrics,             // GET /metrics (a query string is ignored)
    not_found,           // GET of another path
    method_not_allowed,  // any other method
    bad_request,         // not an HTTP/1.x request line
    too_large,           // no end of header within `limit` bytes
};

// limit: the most a request may take, its header included (netd reads no more).
HttpVerdict classify_http_request(std::string_view received, size_t limit);

// The complete answer: status line, Content-Type, Content-Length, Connection: close, body.
// For metrics the body is the page (status 200, text/plain; version=0.0.4); for the others a
// one-line reason. unavailable: metrics, but no page to serve (503).
std::string http_response(HttpVerdict v, const std::string& page, bool unavailable = false);

}  // namespace angel
