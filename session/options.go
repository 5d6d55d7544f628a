package session

import (
	"fmt"
	"net/http"
	"strings"
)

// The realm's cookie and session options are written as words in the Caddyfile
// and in JSON; these functions are the one place each word is checked, for the
// Caddyfile parser and for provisioning alike. An empty value is the default.
// Errors name the option but not its block: callers add "cookie " or "session ".

// ParseSameSite reads a cookie's same_site option: lax (the default), strict or
// none, in any case.
func ParseSameSite(s string) (http.SameSite, error) {
	switch strings.ToLower(s) {
	case "", "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	case "none":
		return http.SameSiteNoneMode, nil
	}
	return 0, fmt.Errorf("same_site %q: want lax, strict or none", s)
}

// ParseCompat reads a cookie's compat option: empty for Auth.js's token format,
// next-auth-v4 for NextAuth.js v4's.
func ParseCompat(s string) (Format, error) {
	switch s {
	case "":
		return FormatAuthJS, nil
	case "next-auth-v4":
		return FormatNextAuthV4, nil
	}
	return 0, fmt.Errorf("compat %q: want next-auth-v4", s)
}

// Strategy says where a session lives, as Auth.js's session.strategy does.
type Strategy int

const (
	// StrategyJWT keeps the session in the encrypted cookie (the default).
	StrategyJWT Strategy = iota
	// StrategyDatabase keeps the session in the store; the cookie holds its id.
	StrategyDatabase
)

// ParseStrategy reads a session's strategy option: jwt (the default) or database.
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "", "jwt":
		return StrategyJWT, nil
	case "database":
		return StrategyDatabase, nil
	}
	return 0, fmt.Errorf("strategy %q: want jwt or database", s)
}
