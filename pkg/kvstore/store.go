// Package kvstore implements k8s.io/apiserver's storage.Interface on a NATS
// JetStream stream, so the generic registry gives TerminalSessions full
// Kubernetes API semantics (resourceVersion, conflicts, paging, watch from a
// resourceVersion, 410 Gone) with NATS as the only stateful dependency.
//
// Layout: one stream per resource, one subject per key holding only its
// latest value (MaxMsgsPerSubject=1). The stream sequence is the
// resourceVersion: global and monotonic, like etcd's revision. Writes are
// compare-and-set on the key's last sequence; deletions are tombstone
// messages. Every replica runs one ordered consumer over the stream that
// feeds an in-memory index (current values plus a bounded window of recent
// events); lists and watches are served from it after a consistent sync,
// point reads and writes go to the stream leader. The code mirrors
// k8s.io/apiserver/pkg/storage/etcd3 so that upstream's storage test suite
// holds it to the same contract.
package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/klog/v2"
)

// Config is what one store needs.
type Config struct {
	JetStream jetstream.JetStream
	Stream    StreamConfig

	Codec          runtime.Codec
	NewFunc        func() runtime.Object
	Prefix         string // storage prefix, e.g. "/registry"
	ResourcePrefix string // e.g. "/terminal.meshery.io/terminalsessions"
	GroupResource  schema.GroupResource
	// Transformer encrypts values at rest; nil means identity.
	Transformer value.Transformer
	// MaxObjectBytes bounds one encoded object (0: DefaultMaxObjectBytes).
	MaxObjectBytes int
	// MaxWatchBacklog bounds the events queued for one slow watcher before it
	// is closed with an error (the client resumes from its last
	// resourceVersion). 0 means the stream's History.
	MaxWatchBacklog int
}

// Store implements storage.Interface.
type Store struct {
	b              *backend
	codec          runtime.Codec
	versioner      storage.Versioner
	transformer    atomic.Pointer[value.Transformer]
	pathPrefix     string
	resourcePrefix string
	groupResource  schema.GroupResource
	newFunc        func() runtime.Object
	maxBacklog     int
	maxObject      int
}

// DefaultMaxObjectBytes is the largest object stored by default: below
// NATS's default maximum payload (1 MiB, headers included), as etcd's
// request limit (1.5 MiB) is for kube-apiserver. Every replica keeps every
// object in memory, so the bound is what one tenant's objects can cost each.
const DefaultMaxObjectBytes = 1000 << 10

// checkSize refuses an object too large to store: 413, as kube-apiserver
// answers a request body over its limit, with the sizes.
func (s *Store) checkSize(key string, data []byte) error {
	if len(data) <= s.maxObject {
		return nil
	}
	return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("%s %q is %d bytes encoded, more than the %d bytes this server stores per object",
		s.groupResource.String(), path.Base(key), len(data), s.maxObject))
}

var _ storage.Interface = &Store{}

// New opens (creating if needed) the stream and loads it into memory.
func New(ctx context.Context, cfg Config) (*Store, error) {
	pathPrefix := path.Join("/", cfg.Prefix)
	if !strings.HasSuffix(pathPrefix, "/") {
		pathPrefix += "/"
	}
	if cfg.ResourcePrefix == "" || cfg.ResourcePrefix == "/" || !strings.HasPrefix(cfg.ResourcePrefix, "/") {
		return nil, fmt.Errorf("resourcePrefix %q must start with / and name a resource", cfg.ResourcePrefix)
	}
	if cfg.Transformer == nil {
		cfg.Transformer = plainTransformer{}
	}
	b, err := openBackend(ctx, cfg.JetStream, cfg.Stream)
	if err != nil {
		return nil, err
	}
	maxObject := cfg.MaxObjectBytes
	if maxObject == 0 {
		maxObject = DefaultMaxObjectBytes
	}
	maxBacklog := cfg.MaxWatchBacklog
	if maxBacklog == 0 {
		maxBacklog = b.cfg.History
	}
	s := &Store{
		b:              b,
		codec:          cfg.Codec,
		versioner:      storage.APIObjectVersioner{},
		pathPrefix:     pathPrefix,
		resourcePrefix: cfg.ResourcePrefix,
		groupResource:  cfg.GroupResource,
		newFunc:        cfg.NewFunc,
		maxBacklog:     maxBacklog,
		maxObject:      maxObject,
	}
	s.transformer.Store(&cfg.Transformer)
	return s, nil
}

// xf is the current value transformer; tests swap it to inject failures.
func (s *Store) xf() value.Transformer { return *s.transformer.Load() }

// Close ends open watches and stops the stream consumer.
func (s *Store) Close() {
	s.b.idx.stopWatches()
	s.b.close()
}

// StopWatches ends open watches, e.g. when the server shuts down: an HTTP
// server drains open requests before it stops, and a watch only ends when
// its client or its storage ends it.
func (s *Store) StopWatches() { s.b.idx.stopWatches() }

// Compact drops retained history up to rev, as etcd compaction does: reads
// and watches at older revisions then get 410 Gone.
func (s *Store) Compact(rev uint64) { s.b.idx.compact(rev) }

// Versioner implements storage.Interface.
func (s *Store) Versioner() storage.Versioner { return s.versioner }

// plainTransformer stores values as encoded; JetStream can encrypt at rest.
type plainTransformer struct{}

func (plainTransformer) TransformFromStorage(_ context.Context, data []byte, _ value.Context) ([]byte, bool, error) {
	return data, false, nil
}

func (plainTransformer) TransformToStorage(_ context.Context, data []byte, _ value.Context) ([]byte, error) {
	return data, nil
}

type authenticatedDataString string

func (d authenticatedDataString) AuthenticatedData() []byte { return []byte(d) }

func (s *Store) prepareKey(key string, recursive bool) (string, error) {
	key, err := storage.PrepareKey(s.resourcePrefix, key, recursive)
	if err != nil {
		return "", err
	}
	return s.pathPrefix + strings.TrimPrefix(key, "/"), nil
}

func (s *Store) decode(data []byte, into runtime.Object, rev uint64) error {
	if _, _, err := s.codec.Decode(data, nil, into); err != nil {
		return err
	}
	// Being unable to set the version does not prevent reading the object.
	if err := s.versioner.UpdateObject(into, rev); err != nil {
		klog.ErrorS(err, "Failed to update object version")
	}
	return nil
}

// Get implements storage.Interface.
func (s *Store) Get(ctx context.Context, key string, opts storage.GetOptions, out runtime.Object) error {
	preparedKey, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	rec, _, err := s.b.get(ctx, preparedKey)
	if err != nil {
		return err
	}
	if opts.ResourceVersion != "" {
		cur, err := s.b.currentRev(ctx)
		if err != nil {
			return err
		}
		if err := s.validateMinimumResourceVersion(opts.ResourceVersion, cur); err != nil {
			return err
		}
	}
	if rec == nil {
		if opts.IgnoreNotFound {
			return runtime.SetZeroValue(out)
		}
		return storage.NewKeyNotFoundError(preparedKey, 0)
	}
	data, _, err := s.xf().TransformFromStorage(ctx, rec.value, authenticatedDataString(preparedKey))
	if err != nil {
		return storage.NewInternalError(err)
	}
	return s.decode(data, out, rec.modRev)
}

// Create implements storage.Interface.
func (s *Store) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	preparedKey, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	if version, err := s.versioner.ObjectResourceVersion(obj); err == nil && version != 0 {
		return storage.ErrResourceVersionSetOnCreate
	}
	if err := s.versioner.PrepareObjectForStorage(obj); err != nil {
		return fmt.Errorf("PrepareObjectForStorage failed: %w", err)
	}
	data, err := runtime.Encode(s.codec, obj)
	if err != nil {
		return err
	}
	if err := s.checkSize(key, data); err != nil {
		return err
	}
	newData, err := s.xf().TransformToStorage(ctx, data, authenticatedDataString(preparedKey))
	if err != nil {
		return storage.NewInternalError(err)
	}
	// Most creates are of new keys: try "no message on the subject" first,
	// and only on conflict learn whether a tombstone is what is in the way.
	var expected uint64
	for {
		rev, err := s.b.put(ctx, preparedKey, newData, expected, 0, time.Duration(ttl)*time.Second)
		if errors.Is(err, errConflict) {
			rec, tombstone, gerr := s.b.get(ctx, preparedKey)
			if gerr != nil {
				return gerr
			}
			if rec != nil {
				return storage.NewKeyExistsError(preparedKey, 0)
			}
			expected = tombstone
			continue
		}
		if err != nil {
			return err
		}
		if out != nil {
			return s.decode(data, out, rev)
		}
		return nil
	}
}

// objState is a key's state as a write loop sees it. expect is the sequence
// a compare-and-set must name: the object's revision, or a tombstone's.
type objState struct {
	obj    runtime.Object
	meta   *storage.ResponseMeta
	rev    uint64
	expect uint64
	data   []byte
	stale  bool
}

func (s *Store) getCurrentState(ctx context.Context, key string, v reflect.Value, ignoreNotFound bool) func() (*objState, error) {
	return func() (*objState, error) {
		rec, tombstone, err := s.b.get(ctx, key)
		if err != nil {
			return nil, err
		}
		return s.getState(ctx, rec, tombstone, key, v, ignoreNotFound)
	}
}

func (s *Store) getState(ctx context.Context, rec *record, tombstone uint64, key string, v reflect.Value, ignoreNotFound bool) (*objState, error) {
	state := &objState{meta: &storage.ResponseMeta{}, expect: tombstone}
	if u, ok := v.Addr().Interface().(runtime.Unstructured); ok {
		state.obj = u.NewEmptyInstance()
	} else {
		state.obj = reflect.New(v.Type()).Interface().(runtime.Object)
	}
	if rec == nil {
		if !ignoreNotFound {
			return nil, storage.NewKeyNotFoundError(key, 0)
		}
		if err := runtime.SetZeroValue(state.obj); err != nil {
			return nil, err
		}
		return state, nil
	}
	state.rev, state.expect = rec.modRev, rec.modRev
	state.meta.ResourceVersion = rec.modRev
	data, stale, err := s.xf().TransformFromStorage(ctx, rec.value, authenticatedDataString(key))
	if err != nil {
		return nil, storage.NewInternalError(err)
	}
	state.data, state.stale = data, stale
	if err := s.decode(state.data, state.obj, state.rev); err != nil {
		return nil, err
	}
	return state, nil
}

func (s *Store) getStateFromObject(obj runtime.Object) (*objState, error) {
	state := &objState{obj: obj, meta: &storage.ResponseMeta{}}
	rv, err := s.versioner.ObjectResourceVersion(obj)
	if err != nil {
		return nil, fmt.Errorf("couldn't get resource version: %w", err)
	}
	state.rev, state.expect = rv, rv
	state.meta.ResourceVersion = rv
	// The serialized form is compared with storage, which never holds the
	// resourceVersion: clear it while encoding.
	if err := s.versioner.PrepareObjectForStorage(obj); err != nil {
		return nil, fmt.Errorf("PrepareObjectForStorage failed: %w", err)
	}
	state.data, err = runtime.Encode(s.codec, obj)
	if err != nil {
		return nil, err
	}
	if err := s.versioner.UpdateObject(state.obj, rv); err != nil {
		klog.ErrorS(err, "Failed to update object version")
	}
	return state, nil
}

// initialState is where a write loop starts: the caller's cached copy when it
// has one (saving a read; the loop re-reads if it proves stale), else
// storage. current says which.
func (s *Store) initialState(cached runtime.Object, getCurrentState func() (*objState, error)) (st *objState, current bool, err error) {
	if cached != nil {
		st, err = s.getStateFromObject(cached)
		return st, false, err
	}
	st, err = getCurrentState()
	return st, true, err
}

// Delete implements storage.Interface.
func (s *Store) Delete(ctx context.Context, key string, out runtime.Object, preconditions *storage.Preconditions,
	validateDeletion storage.ValidateObjectFunc, cachedExistingObject runtime.Object, opts storage.DeleteOptions) error {
	preparedKey, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	v, err := conversion.EnforcePtr(out)
	if err != nil {
		return fmt.Errorf("unable to convert output object to pointer: %w", err)
	}
	if opts.ExpectTransformOrDecodeError {
		return storage.NewInternalError(errors.New("unsafe deletion of malformed objects is not supported by the NATS store"))
	}
	getCurrentState := s.getCurrentState(ctx, preparedKey, v, false)

	origState, origStateIsCurrent, err := s.initialState(cachedExistingObject, getCurrentState)
	if err != nil {
		return err
	}
	for {
		// A check that fails on possibly stale data is retried on fresh data;
		// it is final only if the data was current or did not change.
		var checkErr error
		if preconditions != nil {
			checkErr = preconditions.Check(preparedKey, origState.obj)
		}
		if checkErr == nil {
			checkErr = validateDeletion(ctx, origState.obj)
		}
		if checkErr != nil {
			if origStateIsCurrent {
				return checkErr
			}
			cachedRev := origState.rev
			if origState, err = getCurrentState(); err != nil {
				return err
			}
			origStateIsCurrent = true
			if cachedRev == origState.rev {
				return checkErr
			}
			continue
		}

		rev, err := s.b.del(ctx, preparedKey, origState.expect)
		if errors.Is(err, errConflict) {
			klog.V(4).InfoS("Deletion conflicted, retrying", "key", preparedKey)
			if origState, err = getCurrentState(); err != nil {
				return err
			}
			origStateIsCurrent = true
			continue
		}
		if err != nil {
			return err
		}
		return s.decode(origState.data, out, rev)
	}
}

// GuaranteedUpdate implements storage.Interface.
func (s *Store) GuaranteedUpdate(ctx context.Context, key string, destination runtime.Object, ignoreNotFound bool,
	preconditions *storage.Preconditions, tryUpdate storage.UpdateFunc, cachedExistingObject runtime.Object) error {
	preparedKey, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	v, err := conversion.EnforcePtr(destination)
	if err != nil {
		return fmt.Errorf("unable to convert output object to pointer: %w", err)
	}
	getCurrentState := s.getCurrentState(ctx, preparedKey, v, ignoreNotFound)

	origState, origStateIsCurrent, err := s.initialState(cachedExistingObject, getCurrentState)
	if err != nil {
		return err
	}
	transformContext := authenticatedDataString(preparedKey)
	for {
		if err := preconditions.Check(preparedKey, origState.obj); err != nil {
			if origStateIsCurrent {
				return err
			}
			if origState, err = getCurrentState(); err != nil {
				return err
			}
			origStateIsCurrent = true
			continue
		}

		ret, ttl, err := s.updateState(origState, tryUpdate)
		if err != nil {
			if origStateIsCurrent {
				return err
			}
			cachedRev, cachedUpdateErr := origState.rev, err
			if origState, err = getCurrentState(); err != nil {
				return err
			}
			origStateIsCurrent = true
			if cachedRev == origState.rev {
				return cachedUpdateErr
			}
			continue
		}

		data, err := runtime.Encode(s.codec, ret)
		if err != nil {
			return err
		}
		if err := s.checkSize(key, data); err != nil {
			return err
		}
		if !origState.stale && bytes.Equal(data, origState.data) {
			// Nothing changed. A cached suggestion must be confirmed against
			// storage before skipping the write.
			if !origStateIsCurrent {
				if origState, err = getCurrentState(); err != nil {
					return err
				}
				origStateIsCurrent = true
				if !bytes.Equal(data, origState.data) {
					continue
				}
			}
			if !origState.stale {
				return s.decode(origState.data, destination, origState.rev)
			}
		}

		newData, err := s.xf().TransformToStorage(ctx, data, transformContext)
		if err != nil {
			return storage.NewInternalError(err)
		}
		rev, err := s.b.put(ctx, preparedKey, newData, origState.expect, origState.rev, time.Duration(ttl)*time.Second)
		if errors.Is(err, errConflict) {
			klog.V(4).InfoS("GuaranteedUpdate conflicted, retrying", "key", preparedKey)
			if origState, err = getCurrentState(); err != nil {
				return err
			}
			origStateIsCurrent = true
			continue
		}
		if err != nil {
			return err
		}
		return s.decode(data, destination, rev)
	}
}

func (s *Store) updateState(st *objState, userUpdate storage.UpdateFunc) (runtime.Object, uint64, error) {
	ret, ttlPtr, err := userUpdate(st.obj, *st.meta)
	if err != nil {
		return nil, 0, err
	}
	if err := s.versioner.PrepareObjectForStorage(ret); err != nil {
		return nil, 0, fmt.Errorf("PrepareObjectForStorage failed: %w", err)
	}
	var ttl uint64
	if ttlPtr != nil {
		ttl = *ttlPtr
	}
	return ret, ttl, nil
}

func (s *Store) validateMinimumResourceVersion(minimumResourceVersion string, actualRevision uint64) error {
	if minimumResourceVersion == "" {
		return nil
	}
	minimumRV, err := s.versioner.ParseResourceVersion(minimumResourceVersion)
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("invalid resource version: %v", err))
	}
	if minimumRV > actualRevision {
		return storage.NewTooLargeResourceVersionError(minimumRV, actualRevision, 0)
	}
	return nil
}

// GetList implements storage.Interface.
func (s *Store) GetList(ctx context.Context, key string, opts storage.ListOptions, listObj runtime.Object) error {
	keyPrefix, err := s.prepareKey(key, opts.Recursive)
	if err != nil {
		return err
	}
	listPtr, err := meta.GetItemsPtr(listObj)
	if err != nil {
		return err
	}
	v, err := conversion.EnforcePtr(listPtr)
	if err != nil || v.Kind() != reflect.Slice {
		return fmt.Errorf("need ptr to slice: %v", err)
	}
	withRev, continueKey, err := storage.ValidateListOptions(keyPrefix, s.versioner, opts)
	if err != nil {
		return err
	}
	paging := opts.Predicate.Limit > 0

	var rev uint64
	if withRev > 0 {
		// An exact revision must already be in the index; one beyond the
		// stream is an error, as it is for etcd.
		if uint64(withRev) > s.b.idx.currentRev() {
			cur, err := s.b.sync(ctx)
			if err != nil {
				return err
			}
			if uint64(withRev) > cur {
				return storage.NewTooLargeResourceVersionError(uint64(withRev), cur, 0)
			}
		}
		rev = uint64(withRev)
	} else {
		if rev, err = s.b.sync(ctx); err != nil {
			return err
		}
		if err := s.validateMinimumResourceVersion(opts.ResourceVersion, rev); err != nil {
			return err
		}
	}
	records, rev, err := s.b.idx.list(keyPrefix, opts.Recursive, rev)
	if errors.Is(err, errCompacted) {
		return interpretListError(len(opts.Predicate.Continue) > 0, continueKey, keyPrefix)
	}
	if err != nil {
		return err
	}
	start := 0
	if continueKey != "" {
		for start < len(records) && records[start].key < continueKey {
			start++
		}
	}
	records = records[start:]

	newItemFunc := getNewItemFunc(listObj, v)
	var lastKey string
	hasMore := false
	for _, kr := range records {
		if paging && int64(v.Len()) >= opts.Predicate.Limit {
			hasMore = true
			break
		}
		lastKey = kr.key
		data, _, err := s.xf().TransformFromStorage(ctx, kr.value, authenticatedDataString(kr.key))
		if err != nil {
			return storage.NewInternalError(fmt.Errorf("unable to transform key %q: %w", kr.key, err))
		}
		if err := ctx.Err(); err != nil {
			return storage.NewTimeoutError(kr.key, "request did not complete within requested timeout")
		}
		obj, _, err := s.codec.Decode(data, nil, newItemFunc())
		if err != nil {
			return err
		}
		if err := s.versioner.UpdateObject(obj, kr.modRev); err != nil {
			klog.ErrorS(err, "Failed to update object version")
		}
		if matched, err := opts.Predicate.Matches(obj); err == nil && matched {
			v.Set(reflect.Append(v, reflect.ValueOf(obj).Elem()))
		}
	}
	continueValue, remainingItemCount, err := storage.PrepareContinueToken(lastKey, keyPrefix, int64(rev), int64(len(records)), hasMore, opts)
	if err != nil {
		return err
	}
	if v.IsNil() {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	}
	return s.versioner.UpdateList(listObj, rev, continueValue, remainingItemCount)
}

func getNewItemFunc(listObj runtime.Object, v reflect.Value) func() runtime.Object {
	// Unstructured lists with a target group/version keep it on their items.
	if ul, ok := listObj.(*unstructured.UnstructuredList); ok {
		if apiVersion := ul.GetAPIVersion(); apiVersion != "" {
			return func() runtime.Object {
				return &unstructured.Unstructured{Object: map[string]interface{}{"apiVersion": apiVersion}}
			}
		}
	}
	elem := v.Type().Elem()
	return func() runtime.Object { return reflect.New(elem).Interface().(runtime.Object) }
}

const (
	expiredList     = "The resourceVersion for the provided list is too old."
	continueExpired = "The provided continue parameter is too old " +
		"to display a consistent list result. You can start a new list without " +
		"the continue parameter."
	inconsistentContinue = "The provided continue parameter is too old " +
		"to display a consistent list result. You can start a new list without " +
		"the continue parameter, or use the continue token in this response to " +
		"retrieve the remainder of the results. Continuing with the provided " +
		"token results in an inconsistent list - objects that were created, " +
		"modified, or deleted between the time the first chunk was returned " +
		"and now may show up in the list."
)

func interpretListError(paging bool, continueKey, keyPrefix string) error {
	if !paging {
		return apierrors.NewResourceExpired(expiredList)
	}
	// rv -1 lets the client finish the list at the latest revision.
	newToken, err := storage.EncodeContinue(continueKey, keyPrefix, -1)
	if err != nil {
		return apierrors.NewResourceExpired(continueExpired)
	}
	statusError := apierrors.NewResourceExpired(inconsistentContinue)
	statusError.ErrStatus.ListMeta.Continue = newToken
	return statusError
}

// Watch implements storage.Interface.
func (s *Store) Watch(ctx context.Context, key string, opts storage.ListOptions) (watch.Interface, error) {
	preparedKey, err := s.prepareKey(key, opts.Recursive)
	if err != nil {
		return nil, err
	}
	rev, err := s.versioner.ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	return s.watch(ctx, preparedKey, rev, opts)
}

// Stats implements storage.Interface.
func (s *Store) Stats(ctx context.Context) (storage.Stats, error) {
	if _, err := s.b.sync(ctx); err != nil {
		return storage.Stats{}, err
	}
	prefix := s.pathPrefix + strings.TrimPrefix(s.resourcePrefix, "/")
	count, size := s.b.idx.stats(prefix)
	st := storage.Stats{ObjectCount: count}
	if count > 0 {
		st.EstimatedAverageObjectSizeBytes = size / count
	}
	return st, nil
}

// EnableResourceSizeEstimation implements storage.Interface. Sizes come from
// the index, which knows every key already.
func (s *Store) EnableResourceSizeEstimation(storage.KeysFunc) error { return nil }

// ReadinessCheck implements storage.Interface.
func (s *Store) ReadinessCheck() error {
	if !s.b.js.Conn().IsConnected() {
		return errors.New("not connected to NATS")
	}
	return nil
}

// RequestWatchProgress implements storage.Interface; only the watch cache
// uses it, and this store is not wrapped in one.
func (s *Store) RequestWatchProgress(context.Context) error { return nil }

// GetCurrentResourceVersion implements storage.Interface.
func (s *Store) GetCurrentResourceVersion(ctx context.Context) (uint64, error) {
	return s.b.currentRev(ctx)
}

// CompactRevision implements storage.Interface.
func (s *Store) CompactRevision() int64 { return int64(s.b.idx.compactedRev()) }
