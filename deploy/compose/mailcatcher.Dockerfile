# The demo mail catcher: a real SMTP server (aiosmtpd, as the notifier's
# e-mail tests use) that prints every message it receives to its log:
#   docker-compose --profile demo logs -f mailcatcher
ARG DEBIAN=debian:bookworm-slim
FROM ${DEBIAN}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-aiosmtpd \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
USER nobody
EXPOSE 1025
ENV PYTHONUNBUFFERED=1
CMD ["python3", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:1025", "-c", "aiosmtpd.handlers.Debugging"]
