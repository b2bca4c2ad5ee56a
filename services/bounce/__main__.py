from services.bounce.service import run
from services.bounce.settings import BounceSettings
from shared.runtime import main

settings = BounceSettings()
main("bounce", settings, lambda: run(settings))
