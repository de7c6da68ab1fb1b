package terminalsession

import (
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// checkOrigin refuses an attach that a browser makes on behalf of a page
// whose origin is not allowed. Browsers send Origin with every WebSocket
// handshake and let any page open one to any host, cookies and all; a page
// on another site could otherwise type into a terminal through a local
// proxy that holds someone's credentials (`kubectl proxy`, which refuses
// pods/exec and pods/attach for this reason but knows nothing of this
// resource). Clients that are not browsers (kubectl, client-go) send no
// Origin and are not affected. allowed holds exact origins
// (scheme://host[:port]), compared case-insensitively.
func checkOrigin(req *http.Request, allowed []string, name string) error {
	return checkOriginOf(req, allowed, "attach", name)
}

// checkOriginOf is checkOrigin for the subresource sub (attach, transcript).
func checkOriginOf(req *http.Request, allowed []string, sub, name string) error {
	origin := req.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	for _, a := range allowed {
		if strings.EqualFold(origin, a) {
			return nil
		}
	}
	return apierrors.NewForbidden(terminal.Resource("terminalsessions/"+sub), name,
		fmt.Errorf("origin %q may not use %s: web pages may do so only from an origin the server allows (terminal-apiserver --allowed-origins)", origin, sub))
}
