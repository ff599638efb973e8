/** Vocabulary the fake data is assembled from. Changing a list changes every generated body: keep them stable. */

export const Adjectives = [
  'Golden', 'Midnight', 'Electric', 'Silent', 'Velvet', 'Neon', 'Crimson', 'Hollow', 'Bright', 'Distant',
  'Wild', 'Lucid', 'Paper', 'Frozen', 'Summer', 'Broken', 'Gentle', 'Restless', 'Amber', 'Cosmic',
] as const;

export const Nouns = [
  'Horizon', 'River', 'Signal', 'Garden', 'Echo', 'Harbor', 'Skyline', 'Ember', 'Motion', 'Canyon',
  'Mirror', 'Lantern', 'Orbit', 'Tide', 'Meadow', 'Circuit', 'Avenue', 'Compass', 'Fever', 'Atlas',
] as const;

export const FirstNames = [
  'Ava', 'Leo', 'Maya', 'Noah', 'Iris', 'Kai', 'Lena', 'Omar', 'Zoe', 'Felix',
  'Nora', 'Jonas', 'Rosa', 'Theo', 'Yara', 'Milo', 'Elif', 'Sami', 'Aria', 'Hugo',
] as const;

export const LastNames = [
  'Hart', 'Vale', 'Moreno', 'Lind', 'Okafor', 'Reyes', 'Sato', 'Kowalski', 'Brandt', 'Quinn',
  'Novak', 'Ferreira', 'Holm', 'Ibarra', 'Costa', 'Weber', 'Ncube', 'Park', 'Duval', 'Marsh',
] as const;

export const Genres = ['Electronic', 'Hip Hop', 'Ambient', 'Rock', 'Pop', 'Jazz', 'Cinematic', 'Lo-Fi', 'Funk', 'Folk'] as const;

export const Moods = ['uplifting', 'dark', 'calm', 'energetic', 'melancholic', 'playful', 'epic', 'dreamy'] as const;

export const EnergyLevels = ['low', 'medium', 'high'] as const;

export const MusicalKeys = ['C major', 'G major', 'D minor', 'A minor', 'E minor', 'F major', 'B flat major', 'F sharp minor'] as const;

export const CompanyStems = [
  'Acme', 'Northwind', 'Bluefin', 'Lumen', 'Parallax', 'Quarry', 'Redwood', 'Solstice', 'Tandem', 'Umbra',
  'Vector', 'Wavelength', 'Kestrel', 'Juniper', 'Helix', 'Granite', 'Foundry', 'Everline', 'Drift', 'Cobalt',
  'Beacon', 'Aperture', 'Mosaic', 'Nimbus', 'Oakridge', 'Pinnacle', 'Sable', 'Trellis', 'Verity', 'Zephyr',
] as const;

export const CompanySuffixes = ['Labs', 'Systems', 'Analytics', 'Cloud', 'Robotics', 'Health', 'Logistics', 'Energy', 'Payments', 'Security', 'AI', 'Works'] as const;

export const Industries = ['Software', 'Fintech', 'Healthcare', 'Logistics', 'Energy', 'Cybersecurity', 'Retail', 'Manufacturing', 'Media', 'Biotech'] as const;

export const Places = [
  { city: 'Berlin', country: 'DE' }, { city: 'Austin', country: 'US' }, { city: 'Toronto', country: 'CA' },
  { city: 'London', country: 'GB' }, { city: 'Singapore', country: 'SG' }, { city: 'Lisbon', country: 'PT' },
  { city: 'Stockholm', country: 'SE' }, { city: 'Nairobi', country: 'KE' }, { city: 'Tokyo', country: 'JP' },
  { city: 'São Paulo', country: 'BR' },
] as const;

export const TopLevelDomains = ['com', 'io', 'co', 'ai', 'dev'] as const;

export const PartnershipTypes = ['technology', 'reseller', 'integration', 'channel', 'strategic'] as const;

export const Networks = ['HBO', 'Netflix', 'BBC One', 'AMC', 'Apple TV+', 'FX', 'Hulu', 'Prime Video'] as const;

export const ShowGenres = ['drama', 'comedy', 'thriller', 'science-fiction', 'crime', 'documentary', 'fantasy', 'animation'] as const;
