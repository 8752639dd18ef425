// libcurl client with hand-followed redirects (http.h).
#include "medr1/hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "medr1/core/error.h"

namespace medr1::hub {

namespace {

constexpr size_t kErrorBodyCap = 64 << 10;
constexpr size_t kTextBodyCap = size_t{256} << 20;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// State of one hop (one response).
struct Hop {
  const BodySink* sink = nullptr;
  long status = 0;
  Headers headers;
  bool headers_done = false;
  bool final_2xx = false;  // this response's body goes to the sink
  bool aborted = false;
  std::string error_body;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* hop = static_cast<Hop*>(user);
  const size_t len = size * n;
  const std::string line(data, len);
  if (line.rfind("HTTP/", 0) == 0) {  // status line: a new response starts (after a 1xx, say)
    hop->headers.clear();
    hop->headers_done = false;
    const size_t sp = line.find(' ');
    hop->status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
    return len;
  }
  const std::string t = trim(line);
  if (t.empty()) {
    if (hop->status >= 100 && hop->status < 200) return len;  // interim response
    hop->headers_done = true;
    const bool redirect = is_redirect(hop->status) && hop->headers.count("location");
    hop->final_2xx = !redirect && hop->status >= 200 && hop->status < 300;
    if (hop->final_2xx && hop->sink && hop->sink->on_headers &&
        !hop->sink->on_headers(hop->status, hop->headers)) {
      hop->aborted = true;
      return 0;
    }
    return len;
  }
  const size_t colon = t.find(':');
  if (colon != std::string::npos) {
    hop->headers[lower(trim(t.substr(0, colon)))] = trim(t.substr(colon + 1));
  }
  return len;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* hop = static_cast<Hop*>(user);
  const size_t len = size * n;
  if (hop->final_2xx) {
    if (hop->sink && hop->sink->on_data && !hop->sink->on_data(data, len)) {
      hop->aborted = true;
      return 0;
    }
  } else if (!is_redirect(hop->status)) {
    const size_t room = kErrorBodyCap - std::min(kErrorBodyCap, hop->error_body.size());
    hop->error_body.append(data, std::min(room, len));
  }
  return len;
}

}  // namespace

HttpClient::HttpClient() {
  global_init();
  curl_ = curl_easy_init();
  MEDR1_CHECK(curl_ != nullptr, "libcurl: curl_easy_init failed");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult HttpClient::perform(const HttpRequest& req, const BodySink* sink) {
  CURL* h = static_cast<CURL*>(curl_);
  HttpResult res;
  const std::string origin_host = url_host(req.url);
  std::string url = req.url;
  std::string method = req.method;
  for (int hop_no = 0; hop_no <= req.max_redirects; ++hop_no) {
    curl_easy_reset(h);  // keeps the connection cache
    Hop hop;
    hop.sink = sink;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, req.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, req.connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, req.low_speed_time_s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hop);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &hop);
    if (method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    const std::string range = std::to_string(req.range_from) + "-";
    if (req.range_from > 0) curl_easy_setopt(h, CURLOPT_RANGE, range.c_str());
    curl_slist* hdrs = nullptr;
    // The token stays on the Hub's host: a redirect elsewhere (a CDN's signed URL) must not receive
    // it.
    const bool same_host = url_host(url) == origin_host;
    const std::string auth = "Authorization: Bearer " + req.token;
    if (!req.token.empty() && same_host) hdrs = curl_slist_append(hdrs, auth.c_str());
    hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

    const CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    res.hops = hop_no + 1;
    res.status = hop.status;
    res.headers = hop.headers;
    res.final_url = url;
    if (same_host && hop.status > 0) res.hub_headers = hop.headers;
    res.aborted = hop.aborted;
    res.error_body = std::move(hop.error_body);
    res.curl_code = static_cast<int>(rc);
    if (rc != CURLE_OK) {
      res.curl_error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
      return res;
    }
    const auto loc = hop.headers.find("location");
    if (!is_redirect(hop.status) || loc == hop.headers.end()) return res;
    url = resolve_url(url, loc->second);
    if (hop.status == 303) method = "GET";
  }
  res.curl_code = static_cast<int>(CURLE_TOO_MANY_REDIRECTS);
  res.curl_error = "more than " + std::to_string(req.max_redirects) + " redirects from " + req.url;
  return res;
}

HttpResult HttpClient::get_text(const HttpRequest& req, std::string& body) {
  body.clear();
  BodySink sink;
  sink.on_headers = [&](long, const Headers&) {
    body.clear();
    return true;
  };
  sink.on_data = [&](const char* d, size_t n) {
    if (body.size() + n > kTextBodyCap) return false;
    body.append(d, n);
    return true;
  };
  return perform(req, &sink);
}

std::string resolve_url(const std::string& base, const std::string& location) {
  global_init();
  CURLU* u = curl_url();
  MEDR1_CHECK(u != nullptr, "libcurl: curl_url failed");
  std::string out;
  char* s = nullptr;
  if (curl_url_set(u, CURLUPART_URL, base.c_str(), 0) == CURLUE_OK &&
      curl_url_set(u, CURLUPART_URL, location.c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
    out = s;
    curl_free(s);
  }
  curl_url_cleanup(u);
  MEDR1_CHECK(!out.empty(), "cannot resolve redirect Location '", location, "' against ", base);
  return out;
}

std::string url_host(const std::string& url) {
  global_init();
  CURLU* u = curl_url();
  if (u == nullptr) return "";
  std::string out;
  char* s = nullptr;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &s, 0) == CURLUE_OK) {
    out = lower(s);
    curl_free(s);
  }
  curl_url_cleanup(u);
  return out;
}

std::string url_quote(const std::string& s, bool keep_slash) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    const bool unreserved = alnum || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

}  // namespace medr1::hub
