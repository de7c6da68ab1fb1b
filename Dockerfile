# terminal-apiserver's image for those who build with Docker. `make image` builds
# the same image without Docker (hack/build-image.sh, hack/ociimage): a static
# binary at /terminal-apiserver, CA certificates, user 65532, no shell.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t terminal-apiserver .
# The two FROM lines name tags, which move: for a build you can repeat, pin them
# by digest (docker buildx imagetools inspect IMAGE). `make image` needs no base
# image at all, so what it builds depends only on this repository and go.mod.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Empty: hack/version.sh says "dev" (no .git in the context) unless given one.
ARG VERSION=
ARG TARGETOS=linux TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -buildid= $(VERSION=${VERSION} hack/version.sh)" \
      -o /out/terminal-apiserver ./cmd/terminal-apiserver

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/terminal-apiserver /terminal-apiserver
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/terminal-apiserver"]
