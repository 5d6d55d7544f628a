-- cookies.lua: a wrk script that sends each request with the next of many session
-- cookies, for bench/run.sh with BENCH_COOKIES > 1. BENCH_COOKIE_FILE has one
-- "name=value" a line. Each wrk thread starts at its own place in the list.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local cookies = {}
local i = 0
function init(args)
  for line in io.lines(os.getenv("BENCH_COOKIE_FILE")) do
    cookies[#cookies + 1] = line
  end
  i = ((id or 1) * 7919) % #cookies
end

function request()
  i = i % #cookies + 1
  wrk.headers["Cookie"] = cookies[i]
  return wrk.format()
end
