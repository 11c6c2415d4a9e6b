-- tokenway's REST edge, in front of Envoy's gRPC-JSON transcoder.
--
-- Requests: OpenAI uses one path for streaming and unary calls and picks by the body's "stream"
-- key. The json_to_metadata filter (before this one) has parsed that key into dynamic metadata
-- tokenway.stream; when it is true we send the request to the streaming RPC's Server-Sent Events
-- binding (<path>:sse), whose google.api.HttpBody frames the orchestrator writes itself (in-band
-- error events, data: [DONE]). We read the metadata, never the body: a headers handle taken before
-- body() is invalid after it, and a text search for "stream": true would misroute message content.
--
-- Responses: a gRPC error that ended the call before any message (grpc-status in the response
-- headers) becomes OpenAI's error JSON, {"error": {"message", "type", "param", "code"}}, with the
-- HTTP status the transcoder chose. Errors after the first chunk arrive as in-band SSE events.

-- Request fields per path and the JSON type each must have. The json_to_metadata filter has put
-- each present scalar one, with its JSON type, under the tokenway metadata namespace.
local FIELDS = {}  -- filled in by tools/envoy.py from EDGE_FIELDS

local STREAMING = {
  ["/v1/chat/completions"] = "/v1/chat/completions:sse",
  ["/v1/completions"] = "/v1/completions:sse",
}

-- gRPC code -> HTTP status (grpc-gateway's table) and OpenAI error type
local HTTP = {
  ["1"] = 499, ["2"] = 500, ["3"] = 400, ["4"] = 504, ["5"] = 404, ["6"] = 409, ["7"] = 403,
  ["8"] = 429, ["9"] = 400, ["10"] = 409, ["11"] = 400, ["12"] = 501, ["13"] = 500, ["14"] = 503,
  ["15"] = 500, ["16"] = 401,
}
local TYPES = {
  [400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
  [404] = "not_found_error", [409] = "invalid_request_error", [413] = "invalid_request_error",
  [429] = "rate_limit_error", [499] = "cancelled", [501] = "server_error", [503] = "service_unavailable",
  [504] = "timeout",
}

local function json_string(s)
  if s == nil then
    return "null"
  end
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\t" then return "\\t" end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function reject(request_handle, param, message, code)
  -- marked, so that the local-reply mappers pass this body through instead of wrapping it
  request_handle:streamInfo():dynamicMetadata():set("tokenway", "edge_reply", true)
  local body = string.format('{"error":{"message":%s,"type":"invalid_request_error","param":%s,"code":%s}}',
    json_string(message), json_string(param), json_string(code))
  request_handle:respond({[":status"] = "400", ["content-type"] = "application/json"}, body)
end

local function is_type(value, kind)
  local t = type(value)
  if kind == "integer" then
    return t == "number" and value == math.floor(value)
  end
  return t == kind
end

-- The first field whose JSON type is wrong: (param, message, code), or nil.
local function check_fields(fields, meta)
  for name, kind in pairs(fields) do
    local value = meta[name]
    if value ~= nil and not is_type(value, kind) then
      local article = (kind == "integer") and "an" or "a"
      return name, string.format("'%s' must be %s %s", name, article, kind), "INVALID_TYPE"
    end
  end
  return nil
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local path = headers:get(":path")
  local target = STREAMING[path]
  if target == nil or headers:get(":method") ~= "POST" then
    return
  end
  local meta = request_handle:streamInfo():dynamicMetadata():get("tokenway")
  if meta ~= nil then
    local param, message, code = check_fields(FIELDS[path], meta)
    if param ~= nil then
      reject(request_handle, param, message, code)
      return
    end
  end
  if meta ~= nil and meta["stream"] == true then
    headers:replace(":path", target)
    request_handle:clearRouteCache()
  end
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local grpc_status = headers:get("grpc-status")
  if grpc_status == nil or grpc_status == "0" then
    return
  end
  local status = HTTP[grpc_status] or 500
  local message = percent_decode(headers:get("grpc-message") or "")
  local reason = headers:get("tokenway-error-reason")
  local param = headers:get("tokenway-error-param")
  if status >= 500 and message == "" then
    message = "upstream error"
  end
  local body = string.format('{"error":{"message":%s,"type":%s,"param":%s,"code":%s}}',
    json_string(message), json_string(TYPES[status] or "server_error"), json_string(param), json_string(reason))
  headers:replace(":status", tostring(status))
  headers:replace("content-type", "application/json")
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-status-details-bin")
  headers:replace("content-length", tostring(#body))
  response_handle:body(true):setBytes(body)
end
