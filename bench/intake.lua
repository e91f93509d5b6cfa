-- wrk script: POST a realistic intake body with the client API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "dev-client-key"
wrk.body = [[{"customer_email":"john.doe@example.com","customer_name":"John Doe","description":"Our SSL certificate expired yesterday and browsers now show a certificate error on our custom domain.","severity":"medium","product":"web-portal","environment":"production"}]]
