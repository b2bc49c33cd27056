package backend

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrInsecureHTTP is returned by New (and CheckTransport) for an http:// URL to a
// host that is not loopback, unless Options.AllowInsecureHTTP is set: the admin
// key would cross the network in clear. It is an ErrInvalidConfig.
var ErrInsecureHTTP = fmt.Errorf("%w: plain http to a host that is not loopback", ErrInvalidConfig)

// CheckTransport refuses (with ErrInsecureHTTP) an http:// URL to a host that
// is not loopback unless allowInsecureHTTP is set. Loopback is 127.0.0.0/8, ::1
// and the name localhost. A URL that does not parse passes: New reports it.
func CheckTransport(rawURL string, allowInsecureHTTP bool) error {
	u, err := url.Parse(rawURL)
	if err != nil || !strings.EqualFold(u.Scheme, "http") || allowInsecureHTTP || isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%w: url %q: use https, or allow insecure http explicitly", ErrInsecureHTTP, u.Redacted())
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
