// Package session encodes the session token (JWE) and manages authgate's cookies: chunking, prefixes, CSRF double-submit and the sealed OAuth state (state, PKCE verifier, nonce) of a sign-in.
package session
