package console

import (
	"net/http"
	"regexp"
	"strings"
)

// route is one kind of request the console makes.
type route struct {
	methods []string
	path    *regexp.Regexp
	upgrade string // "websocket" for the attach, else no upgrade
}

// name is a DNS label or subdomain, as namespace and object names are.
const name = `[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?`

// routes are every API request of the console (web/src/api), and nothing
// else: with the user's credentials this proxy could reach anything they
// may, so it forwards only what the console needs to show the topology and
// its terminals. Reading pods and workloads is what the topology shows;
// sessions are created, read, attached to and deleted, and their
// transcripts read (the Replay tab; its query is the API's to check, and
// what RBAC grants the user either way); access reviews
// decide which buttons appear, and the self-review names the user (whose
// sessions are theirs to reattach).
var routes = []route{
	{methods: []string{http.MethodGet}, path: regexp.MustCompile(`^/api/v1/namespaces$`)},
	{methods: []string{http.MethodGet}, path: regexp.MustCompile(`^/api/v1/namespaces/` + name + `/pods(/` + name + `)?$`)},
	{methods: []string{http.MethodGet}, path: regexp.MustCompile(`^/apis/apps/v1/namespaces/` + name + `/(deployments|statefulsets|daemonsets)$`)},
	{methods: []string{http.MethodGet}, path: regexp.MustCompile(`^/apis/terminal\.meshery\.io/v1alpha1$`)},
	{methods: []string{http.MethodGet, http.MethodPost}, path: regexp.MustCompile(`^/apis/terminal\.meshery\.io/v1alpha1/namespaces/` + name + `/terminalsessions$`)},
	{methods: []string{http.MethodGet, http.MethodDelete}, path: regexp.MustCompile(`^/apis/terminal\.meshery\.io/v1alpha1/namespaces/` + name + `/terminalsessions/` + name + `$`)},
	{methods: []string{http.MethodGet}, path: regexp.MustCompile(`^/apis/terminal\.meshery\.io/v1alpha1/namespaces/` + name + `/terminalsessions/` + name + `/attach$`), upgrade: "websocket"},
	{methods: []string{http.MethodGet}, path: regexp.MustCompile(`^/apis/terminal\.meshery\.io/v1alpha1/namespaces/` + name + `/terminalsessions/` + name + `/transcript$`)},
	{methods: []string{http.MethodPost}, path: regexp.MustCompile(`^/apis/authorization\.k8s\.io/v1/selfsubjectaccessreviews$`)},
	{methods: []string{http.MethodPost}, path: regexp.MustCompile(`^/apis/authentication\.k8s\.io/v1/selfsubjectreviews$`)},
}

// allowed reports whether the console makes this request. An attach must be
// a WebSocket, and nothing else may upgrade (no SPDY, no exec through here).
// upgrade is the protocol asked for, lower case ("" for none).
func allowed(method, path, upgrade string) bool {
	if strings.Contains(path, "//") || strings.Contains(path, "/../") || strings.HasSuffix(path, "/..") {
		return false
	}
	for _, rt := range routes {
		if rt.path.MatchString(path) && rt.upgrade == upgrade {
			for _, m := range rt.methods {
				if m == method {
					return true
				}
			}
		}
	}
	return false
}
