package handlers

import "net/http"

// Auth.js error codes, shown to users on the error page and named in logs.
const (
	errConfiguration     = "Configuration"
	errAccessDenied      = "AccessDenied"
	errOAuthSignin       = "OAuthSignin"
	errOAuthCallback     = "OAuthCallback"
	errCredentialsSignin = "CredentialsSignin"
	errEmailSignin       = "EmailSignin"
	errSessionRequired   = "SessionRequired"
	errVerification      = "Verification"
	errAccountNotLinked  = "OAuthAccountNotLinked"
	// errRefresh is Auth.js's refresh-token-rotation guide's name for a refresh that failed.
	errRefresh = "RefreshAccessTokenError"
	// errSessionUnavailable: the store that holds sessions cannot be asked.
	errSessionUnavailable = "SessionUnavailable"
)

// errorCode is how an error code is shown: the error page's status and text.
type errorCode struct {
	status int
	text   string
}

// errorCodes is the one table of error codes.
var errorCodes = map[string]errorCode{
	errConfiguration:     {http.StatusInternalServerError, "The sign-in service is misconfigured. The administrator can find the details in the server log."},
	errAccessDenied:      {http.StatusForbidden, "You do not have permission to sign in."},
	errVerification:      {http.StatusForbidden, "The sign-in link is no longer valid. It may have been used already or it may have expired."},
	errOAuthSignin:       {http.StatusBadGateway, "Could not start signing in with the identity provider. It may be unavailable; try again in a moment."},
	errOAuthCallback:     {http.StatusBadRequest, "Signing in with the identity provider could not be completed. Start again from the sign-in page."},
	errCredentialsSignin: {http.StatusUnauthorized, "Sign in failed. Check the username and password you entered."},
	errEmailSignin:       {http.StatusBadGateway, "The sign-in email could not be sent. Try again in a moment."},
	errAccountNotLinked:  {http.StatusConflict, "This email address is already used by an account that signed in another way. Sign in the way you did before."},
	errSessionRequired:   {http.StatusUnauthorized, "Please sign in to see this page."},
}

// defaultError is shown for a code the table does not know.
var defaultError = errorCode{http.StatusBadRequest, "Something went wrong while signing in."}

// lookupError returns how code is shown, and the code to show ("Default" for an unknown one).
func lookupError(code string) (string, errorCode) {
	if e, ok := errorCodes[code]; ok {
		return code, e
	}
	return "Default", defaultError
}

// errorText is the text shown for code.
func errorText(code string) string {
	_, e := lookupError(code)
	return e.text
}
