# A Postgres 15 image from Debian's postgresql-15, for machines that cannot
# pull the official postgres:15 (docker-compose.yml uses POSTGRES_IMAGE,
# postgres:15 by default). It keeps the official image's interface as far
# as docker-compose.yml uses it: POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, data in /var/lib/postgresql/data (PGDATA), port 5432,
# password (scram-sha-256) logins over the network, pg_isready.
#
#   docker build -f deploy/compose/postgres.Dockerfile -t trygg/postgres:15 .
ARG DEBIAN=debian:bookworm-slim
FROM ${DEBIAN}
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/postgresql/15 /etc/postgresql/15 \
 && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 775 /var/run/postgresql
COPY deploy/compose/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
