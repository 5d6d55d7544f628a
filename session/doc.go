// Package session encodes the session token (JWE) and manages authgate's cookies: chunking, prefixes, CSRF double-submit and sealed short-lived values.
package session
