# TLS termination in front of intake (and the other HTTP APIs): nginx from
# Debian with deploy/proxy/nginx.conf. The certificate and key are mounted
# at run time (/etc/trygg/tls/tls.crt, tls.key); none is in the image.
ARG DEBIAN=debian:bookworm-slim
FROM ${DEBIAN}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-light curl \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
COPY deploy/proxy/nginx.conf /etc/nginx/nginx.conf
USER www-data
EXPOSE 8443
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
