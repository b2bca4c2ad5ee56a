"""What every Hato service uses: settings, broker topology, store, schemas, telemetry, logging."""
