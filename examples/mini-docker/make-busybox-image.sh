#!/bin/sh
# Builds a one-layer busybox image as a `docker save` archive from the host's /bin/busybox:
#   sh examples/mini-docker/make-busybox-image.sh /tmp/busybox.tar
set -eu
out=${1:?usage: make-busybox-image.sh OUT.tar}
bb=$(command -v busybox)
work=$(mktemp -d /tmp/nsbox-mkimage-XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/www" "$root/data" "$work/img/layer"
chmod 1777 "$root/tmp" "$root/data"
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo 'hello from the busybox image' > "$root/www/index.html"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/img/layer/layer.tar" .
diff=$(sha256sum "$work/img/layer/layer.tar" | cut -d' ' -f1)
cat > "$work/img/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff"]}}
JSON
cid=$(sha256sum "$work/img/config.json" | cut -d' ' -f1)
mv "$work/img/config.json" "$work/img/$cid.json"
printf '[{"Config":"%s.json","RepoTags":["busybox:latest"],"Layers":["layer/layer.tar"]}]\n' "$cid" > "$work/img/manifest.json"
tar -C "$work/img" -cf "$out" manifest.json "$cid.json" layer
echo "$out"
