from services.ingest.service import run
from services.ingest.settings import IngestSettings
from shared.runtime import main

settings = IngestSettings()
main("ingest", settings, lambda: run(settings))
