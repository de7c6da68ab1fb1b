// Package apiserver assembles terminal-apiserver: the terminal.meshery.io API
// group on a generic API server whose storage is NATS JetStream.
package apiserver

import (
	"errors"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/client-go/kubernetes"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/install"
	"github.com/meshery/terminal-apiserver/pkg/attach"
	"github.com/meshery/terminal-apiserver/pkg/registry/terminalsession"
)

var (
	// Scheme knows the terminal.meshery.io types and the meta types the
	// generic server needs.
	Scheme = runtime.NewScheme()
	// Codecs serializes Scheme's types.
	Codecs = serializer.NewCodecFactory(Scheme)
	// Serializer is what the server offers clients: Codecs without
	// protobuf. The terminal types have no protobuf encoding, and offering
	// it made every client that prefers protobuf fail, kube-controller-
	// manager's namespace controller among them: a namespace holding a
	// session never finished deleting. Such clients fall back to JSON, as
	// they do for custom resources.
	Serializer runtime.NegotiatedSerializer = withoutProtobuf{Codecs}
)

type withoutProtobuf struct{ runtime.NegotiatedSerializer }

func (w withoutProtobuf) SupportedMediaTypes() []runtime.SerializerInfo {
	var kept []runtime.SerializerInfo
	for _, info := range w.NegotiatedSerializer.SupportedMediaTypes() {
		if info.MediaType != runtime.ContentTypeProtobuf {
			kept = append(kept, info)
		}
	}
	return kept
}

func init() {
	install.Install(Scheme)
	// Options types (ListOptions, DeleteOptions, ...) are served as v1.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// Config is the server's configuration.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	// RESTOptionsGetter provides storage for each resource (NATS).
	RESTOptionsGetter generic.RESTOptionsGetter
	// KubeClient talks to kube-apiserver as the server's own identity. Creating a
	// session asks it whether the user may exec into the target and looks the pod up.
	KubeClient kubernetes.Interface
	// Limits bound one user's sessions and what a spec may ask for.
	Limits terminalsession.Limits
	// AttachLimits bound concurrent attaches.
	AttachLimits terminalsession.AttachLimits
	// AllowedOrigins are the browser origins that may attach.
	AllowedOrigins []string
	// Relay connects attach viewers to sessions' NATS subjects; nil
	// serves no attach subresource.
	Relay *attach.Relay
}

type completedConfig struct {
	GenericConfig     genericapiserver.CompletedConfig
	RESTOptionsGetter generic.RESTOptionsGetter
	KubeClient        kubernetes.Interface
	Limits            terminalsession.Limits
	AttachLimits      terminalsession.AttachLimits
	AllowedOrigins    []string
	// Relay connects attach viewers to sessions' NATS subjects.
	Relay *attach.Relay
}

// CompletedConfig is a Config with defaults filled in.
type CompletedConfig struct {
	*completedConfig
}

// Complete fills in defaults.
func (cfg *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{
		GenericConfig:     cfg.GenericConfig.Complete(),
		RESTOptionsGetter: cfg.RESTOptionsGetter,
		KubeClient:        cfg.KubeClient,
		Limits:            cfg.Limits,
		AttachLimits:      cfg.AttachLimits,
		AllowedOrigins:    cfg.AllowedOrigins,
		Relay:             cfg.Relay,
	}}
}

// Server is a running terminal-apiserver.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// New builds the server and installs the API group.
func (c CompletedConfig) New() (*Server, error) {
	// Without a client the create-time checks could not run, and a session would then
	// grant a shell to anyone allowed to create terminalsessions: refuse to start.
	if c.KubeClient == nil {
		return nil, errors.New("a kube-apiserver client is required: sessions are authorized against pods/exec at creation")
	}
	generic, err := c.GenericConfig.New("terminal-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	sessions, status, err := terminalsession.NewREST(Scheme, c.RESTOptionsGetter, terminalsession.NewTargetChecker(c.KubeClient), c.Limits)
	if err != nil {
		return nil, err
	}
	// The group's own parameter codec: it decodes the attach subresource's
	// query into TerminalSessionAttachOptions (metav1's knows only the
	// generic options, which the handlers decode with it themselves).
	group := genericapiserver.NewDefaultAPIGroupInfo(terminal.GroupName, Scheme, runtime.NewParameterCodec(Scheme), Codecs)
	group.NegotiatedSerializer = Serializer
	group.VersionedResourcesStorageMap["v1alpha1"] = map[string]rest.Storage{
		"terminalsessions":        sessions,
		"terminalsessions/status": status,
	}
	if c.Relay != nil {
		group.VersionedResourcesStorageMap["v1alpha1"]["terminalsessions/attach"] = terminalsession.NewAttachREST(sessions, c.Relay, c.GenericConfig.Authorization.Authorizer, c.AttachLimits, c.AllowedOrigins)
		group.VersionedResourcesStorageMap["v1alpha1"]["terminalsessions/transcript"] = terminalsession.NewTranscriptREST(sessions, c.Relay.JetStream, c.GenericConfig.Authorization.Authorizer, c.AttachLimits, c.AllowedOrigins)
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, err
	}
	return &Server{GenericAPIServer: generic}, nil
}

// LongRunning says which requests run as long as their client wants: watches,
// attaches and transcripts (followed, or large, as pods/log). They escape the request timeout (--request-timeout, 60 s),
// which would otherwise cut every terminal after a minute, and the
// max-in-flight limits, as pods/attach does in kube-apiserver.
var LongRunning = genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch"), sets.NewString("attach", "transcript"))

// attachVerbs authorizes every request to the attach subresource as
// "create", whatever its method: WebSocket clients (browsers) upgrade with a
// GET, which would otherwise be a "get", a verb read-only roles often hold
// (kubernetes/kubernetes#78741, closed for pods/exec in 1.35 the same way).
type attachVerbs struct{ apirequest.RequestInfoResolver }

// WithAttachAsCreate wraps a request info resolver so that attaching needs
// "create terminalsessions/attach" for every protocol.
func WithAttachAsCreate(r apirequest.RequestInfoResolver) apirequest.RequestInfoResolver {
	return attachVerbs{r}
}

func (a attachVerbs) NewRequestInfo(req *http.Request) (*apirequest.RequestInfo, error) {
	info, err := a.RequestInfoResolver.NewRequestInfo(req)
	if err == nil && info.IsResourceRequest && info.APIGroup == terminal.GroupName &&
		info.Resource == "terminalsessions" && info.Subresource == "attach" {
		info.Verb = "create"
	}
	return info, err
}
