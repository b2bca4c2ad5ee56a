from services.signer.service import run
from services.signer.settings import SignerSettings
from shared.runtime import main

settings = SignerSettings()
main("signer", settings, lambda: run(settings))
