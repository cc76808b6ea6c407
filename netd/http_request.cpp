#include "netd/http_request.hpp"

namespace angel {

namespace {

// "METHOD /target HTTP/1.x": method in capitals, a target from the root, HTTP/1.0 or 1.1.
bool request_line(std::string_view line, std::string_view* method, std::string_view* target) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t sp1 = line.find(' ');
    if (sp1 == 0 || sp1 == std::string_view::npos) return false;
    const size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return false;
    *method = line.substr(0, sp1);
    *target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    for (char c : *method)
        if (c < 'A' || c > 'Z') return false;
    return (*target)[0] == '/' && (version == "HTTP/1.0" || version == "HTTP/1.1");
}

}  // namespace

HttpVerdict classify_http_request(std::string_view received, size_t limit) {
    // The request line is judged as soon as it is complete: garbage is refused at once.
    const size_t eol = received.find('\n');
    if (eol == std::string_view::npos)
        return received.size() >= limit ? HttpVerdict::too_large : HttpVerdict::incomplete;
    std::string_view method, target;
    if (!request_line(received.substr(0, eol), &method, &target)) return HttpVerdict::bad_request;
    // The header ends with an empty line (CRLF CRLF, or bare LF LF from a lenient client).
    const bool ended = received.find("\r\n\r\n") != std::string_view::npos || received.find("\n\n") != std::string_view::npos;
    if (!ended) return received.size() >= limit ? HttpVerdict::too_large : HttpVerdict::incomplete;
    if (method != "GET") return HttpVerdict::method_not_allowed;
    return target.substr(0, target.find('?')) == "/metrics" ? HttpVerdict::metrics : HttpVerdict::not_found;
}

std::string http_response(HttpVerdict v, const std::string& page, bool unavailable) {
    const char* status = "400 Bad Request";
    std::string body = "bad request: GET /metrics\n";
    std::string extra;
    switch (v) {
        case HttpVerdict::metrics:
            if (unavailable) {
                status = "503 Service Unavailable";
                body = "no metrics page yet: try again\n";
                extra = "Retry-After: 1\r\n";
            } else {
                status = "200 OK";
                body = page;
            }
            break;
        case HttpVerdict::not_found: status = "404 Not Found"; body = "not found: GET /metrics\n"; break;
        case HttpVerdict::method_not_allowed:
            status = "405 Method Not Allowed";
            body = "only GET /metrics\n";
            extra = "Allow: GET\r\n";
            break;
        case HttpVerdict::too_large: status = "431 Request Header Fields Too Large"; body = "request too large\n"; break;
        case HttpVerdict::bad_request:
        case HttpVerdict::incomplete: break;
    }
    const bool ok = v == HttpVerdict::metrics && !unavailable;
    std::string r = std::string("HTTP/1.1 ") + status + "\r\n";
    r += ok ? "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" : "Content-Type: text/plain; charset=utf-8\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra + "Connection: close\r\n\r\n";
    r += body;
    return r;
}

}  // namespace angel
