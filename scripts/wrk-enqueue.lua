-- wrk script: POST a no-op demo job (the Authorization header comes from the command line).
wrk.method = "POST"
wrk.body = '{"kind":"demo.sleep","payload":{"seconds":0}}'
wrk.headers["Content-Type"] = "application/json"
