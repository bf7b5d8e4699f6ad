-- POST /v1/search as multipart: the photo WRK_FILE (its bytes read once) and k=10.
package.path = os.getenv("WRK_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local boundary = "stylesense-bench-boundary"
local photo = common.read(os.getenv("WRK_FILE"))
wrk.method = "POST"
wrk.path = "/v1/search"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = table.concat({
  "--" .. boundary,
  'Content-Disposition: form-data; name="k"',
  "",
  "10",
  "--" .. boundary,
  'Content-Disposition: form-data; name="photo"; filename="query.jpg"',
  "Content-Type: image/jpeg",
  "",
  photo,
  "--" .. boundary .. "--",
  "",
}, "\r\n")
