// A small blocking HTTP client over libcurl for the Hub protocol: one easy handle per worker
// (connections are kept alive between requests), redirects followed by hand so the client sees
// every hop, as huggingface_hub's _httpx_follow_hub_redirects_with_backoff does: relative Locations
// are resolved against the request URL, and the Authorization header is sent only while the hops
// stay on the request's own host (a CDN's signed URL gets none). No retries here: the caller
// decides what is transient (snapshot_download.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace medr1::hub {

// Response headers, names lower-cased; a repeated header keeps its last value.
using Headers = std::map<std::string, std::string>;

struct HttpRequest {
  std::string method = "GET";  // GET or HEAD
  std::string url;
  std::string token;  // "Authorization: Bearer <token>" on the request's own host; empty = none
  int64_t range_from = 0;  // > 0: "Range: bytes=<range_from>-"
  std::string user_agent = "medr1-download/1";
  int max_redirects = 10;
  long connect_timeout_s = 10;
  long low_speed_time_s = 60;  // abort a transfer that stays under 1 byte/s this long
};

struct HttpResult {
  int curl_code = 0;       // CURLcode; 0 = the transfer completed (whatever the HTTP status)
  std::string curl_error;  // curl's message when curl_code != 0
  long status = 0;         // HTTP status of the final response (0: none received)
  std::string final_url;
  Headers headers;      // the final response's headers
  Headers hub_headers;  // the last response served by the request's own host (the Hub's X-Linked-*,
                        // X-Repo-Commit)
  std::string error_body;  // body of a non-2xx final response (first 64 KiB)
  int hops = 0;            // responses received (1 + redirects followed)
  bool aborted = false;    // a sink callback asked to stop
};

// Receives the final 2xx response: on_headers once (before any byte; also for an empty body), then
// on_data per chunk. Either returns false to abort the transfer (curl then reports
// CURLE_WRITE_ERROR and `aborted` is set).
struct BodySink {
  std::function<bool(long status, const Headers& headers)> on_headers;
  std::function<bool(const char* data, size_t n)> on_data;
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs the request, following redirects; network failures come back in curl_code, never as
  // exceptions.
  HttpResult perform(const HttpRequest& req, const BodySink* sink = nullptr);
  // GET whose 2xx body is returned in `body` (API calls; capped at 256 MiB).
  HttpResult get_text(const HttpRequest& req, std::string& body);

 private:
  void* curl_;  // CURL*
};

// Resolves `location` (absolute or relative) against `base`, as a browser / urljoin does.
std::string resolve_url(const std::string& base, const std::string& location);
// Host name of a URL, lower-cased ("" if it has none).
std::string url_host(const std::string& url);
// Percent-encodes all but RFC 3986 unreserved characters (and '/' when keep_slash), like
// urllib.parse.quote.
std::string url_quote(const std::string& s, bool keep_slash);

}  // namespace medr1::hub
